"""Property-based tests (hypothesis): the PCM reader, the config parser and event decoding take anything.

Each property holds for every input hypothesis makes: a valid input gives the exact answer, an
invalid one the project's own error, never another exception.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instrumentd.daemon import events
from instrumentd.daemon.config import PCM_FORMATS, STREAM_NAME, Config, load_config, parse_source
from instrumentd.daemon.events import EventError
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.audio import PcmReader
from instrumentd.pipeline.errors import ParameterError

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = [f for f in Config.__dataclass_fields__]


def _reference(data: bytes, dtype: str, channels: int) -> np.ndarray:
    frame = np.dtype(dtype).itemsize * channels
    raw = np.frombuffer(data[: len(data) - len(data) % frame], dtype=dtype).reshape(-1, channels).astype(np.float64)
    if dtype == "u1":
        raw = (raw - 128) / 128
    elif np.dtype(dtype).kind == "i":
        raw = raw / 2 ** (8 * np.dtype(dtype).itemsize - 1)
    raw = np.clip(np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0), -1, 1)
    return raw.mean(axis=1)


@EXAMPLES
@given(fmt=st.sampled_from(sorted(PCM_FORMATS)), channels=st.integers(1, 8), data=st.binary(max_size=600),
       cuts=st.lists(st.integers(0, 600), max_size=8))
def test_pcm_reader_gives_the_same_samples_however_the_bytes_are_cut(fmt, channels, data, cuts):
    dtype = PCM_FORMATS[fmt]
    reader = PcmReader(dtype, channels)
    edges = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    out = np.concatenate([reader.push(data[a:b]) for a, b in zip(edges, edges[1:])])
    frame = np.dtype(dtype).itemsize * channels
    assert out.dtype == np.float32 and len(out) == len(data) // frame
    assert reader.pending == len(data) % frame  # a frame cut short is held, never decoded half
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1)
    np.testing.assert_allclose(out, _reference(data, dtype, channels), atol=1e-6)


_values = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30), st.lists(st.text(max_size=20), max_size=3))


def _toml_value(v) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return json.dumps(v)


@EXAMPLES
@given(settings_=st.dictionaries(st.sampled_from(FIELDS + ["bogus"]), _values, max_size=5))
def test_config_file_gives_a_valid_config_or_one_parameter_error(tmp_path_factory, settings_):
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in settings_.items()))
    try:
        cfg = load_config(path, env={})
    except ParameterError as exc:
        assert "\n" not in str(exc)
        return
    assert load_config(_write(path, cfg.to_toml()), env={}) == cfg  # what it prints, it reads back
    cfg.validate()


def _write(path, text):
    path.write_text(text)
    return path


@EXAMPLES
@given(text=st.text(max_size=200))
def test_any_text_as_config_file_is_a_config_or_one_parameter_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_text(text)
    try:
        load_config(path, env={})
    except ParameterError as exc:
        assert "\n" not in str(exc)


@EXAMPLES
@given(env=st.dictionaries(st.sampled_from([f"INSTRUMENTD_{f.upper()}" for f in FIELDS]),
                           st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                   max_size=30), max_size=4))
def test_environment_gives_a_valid_config_or_one_parameter_error(env):
    try:
        load_config(env=env)
    except ParameterError as exc:
        assert "\n" not in str(exc)


@EXAMPLES
@given(text=st.text(max_size=80) | st.builds(lambda k, t: f"{k}:{t}", st.sampled_from(
    ["mic", "file", "file+fast", "stdin", "ffmpeg", "x=file", "../a=mic"]), st.text(max_size=40)))
def test_source_specs_parse_to_safe_names_or_one_parameter_error(text):
    try:
        spec = parse_source(text)
    except ParameterError as exc:
        assert "\n" not in str(exc)
        return
    assert STREAM_NAME.fullmatch(spec.name) and "/" not in spec.name and spec.name not in (".", "..")
    assert parse_source(spec.spec) == spec


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


@EXAMPLES
@given(body=st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_decode_to_a_valid_event_or_one_event_error(body):
    try:
        event = events.decode(body)
    except EventError:
        return
    events.encode(event)  # what decodes is an event the daemon could have sent


@EXAMPLES
@given(field=st.sampled_from(["schema", "type", "stream", "seq", "t_start", "t_end", "wall_time", "probabilities",
                              "top", "labels", "latency_ms", "model", "trained", "extra"]),
       value=_json)
def test_a_window_event_with_any_field_changed_is_valid_or_refused(field, value):
    event = events.window_event("s", 3, 1.0, 4.0, 1.7e9, np.full(11, 1 / 11), CLASSES, ["pia"], 5.0, "m", True)
    assert events.decode(events.encode(event)) == event
    event[field] = value
    try:
        got = events.decode(json.dumps(event).encode())
    except EventError as exc:
        assert "\n" not in str(exc)
        return
    assert got == event


@pytest.mark.parametrize("body", [b"[" * 100_000, b"1" * 5000, b'{"schema": 1, "x": NaN}', b"\xff\xfe"])
def test_hostile_bodies_found_by_these_properties_are_refused(body):
    with pytest.raises(EventError, match="not JSON"):
        events.decode(body)


# -- the replay endpoint and the config loader against anything -----------------------------------------

_deep = st.recursive(st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=5) | st.booleans(),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                     max_leaves=20)


def _toml_any(v) -> str:
    """Any value as TOML text: nested arrays and inline tables, any integer, inf and nan."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return _toml_value(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_any(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_any(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


@EXAMPLES
@given(settings_=st.dictionaries(st.sampled_from(FIELDS), _deep, max_size=4), depth=st.integers(0, 3000))
def test_any_values_however_large_or_deep_give_a_bounded_config_or_one_error(tmp_path_factory, settings_, depth):
    from instrumentd.daemon.config import LIMITS

    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    text = "".join(f"{k} = {_toml_any(v)}\n" for k, v in settings_.items())
    path.write_text(text + ("deep = " + "[" * depth + "]" * depth + "\n" if depth else ""))
    try:
        cfg = load_config(path, env={})
    except ParameterError as exc:
        assert "\n" not in str(exc)
        return
    assert all(getattr(cfg, name) <= limit for name, limit in LIMITS.items())


@pytest.fixture(scope="module")
def replay_endpoint(tmp_path_factory):
    """A ReplayServer on its own thread over a small real log; yields a REQ-socket factory's endpoint."""
    import zmq

    from instrumentd.daemon.eventlog import EventLog
    from instrumentd.daemon.replay import ReplayServer

    folder = tmp_path_factory.mktemp("events")
    log = EventLog(folder)
    log.open_stream("a")
    for seq in range(30):
        log.append(events.window_event("a", seq, seq, seq + 3, 1.7e9, [1 / 11] * 11, CLASSES, [], 1.0, "m", False))
    log.close()
    endpoint = "inproc://replay-fuzz"
    server = ReplayServer(endpoint, folder, zmq.Context.instance())
    server.start()
    yield endpoint, server
    server.close()


_requests = (st.binary(max_size=6000)
             | _deep.map(lambda v: json.dumps(v).encode())
             | st.fixed_dictionaries({}, optional={"stream": _deep | st.sampled_from(["a", "b", "../a", ""]),
                                                   "from_seq": _deep | st.integers(-5, 40),
                                                   "limit": _deep | st.integers(-5, 2000)}).map(
                 lambda d: json.dumps(d).encode())
             | st.integers(1, 200_000).map(lambda n: b"[" * n))


@EXAMPLES
@given(body=_requests)
def test_the_replay_endpoint_answers_anything_with_events_or_one_error(replay_endpoint, body):
    import zmq

    endpoint, server = replay_endpoint
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(body)
        assert sock.poll(10000), "the replay thread stopped answering"
        answer = json.loads(sock.recv())
    finally:
        sock.close()
    assert answer["schema"] == 1
    if "error" in answer:
        assert set(answer) == {"schema", "error"} and "\n" not in answer["error"]
        assert "internal error" not in answer["error"], body[:100]
    elif "streams" in answer:
        assert answer["streams"] == {"a": 29}
    else:
        seqs = [e["seq"] for e in answer["events"]]
        if seqs:
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and answer["next_seq"] == seqs[-1] + 1
        else:  # nothing left: the answer must say the client is up to date, and be right
            assert answer["next_seq"] > answer["last_seq"] == (29 if answer["stream"] == "a" else -1)
    assert server._thread.is_alive()
