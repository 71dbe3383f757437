import json

import numpy as np
import pytest

from instrumentd.daemon import events
from instrumentd.daemon.events import EventError, decode, encode
from instrumentd.model.classes import CLASSES

PROBS = np.full(11, 1 / 11)
PROBS[6] = 0.3


def window(**over):
    e = events.window_event("studio", 7, 1.0, 4.0, 1_700_000_000.25, PROBS / PROBS.sum(), CLASSES, ["pia"],
                            12.5, "cross-abc", False)
    e.update(over)
    return e


def test_builders_make_valid_events_that_round_trip():
    w = window()
    assert w["top"] == "pia" and w["wall_time"] == "2023-11-14T22:13:20.250+00:00"
    assert decode(encode(w)) == w
    s = events.segment_event("studio", 8, "pia", "end", 1.0, 9.0, "change", 1_700_000_000.0, "cross-abc")
    assert decode(encode(s)) == s
    st = events.status_event(1_700_000_000.0, 3.0, "cpu", "cross-abc", False, 0, {"studio": {
        "source": "studio=mic", "state": "running", "level_db": -20.0, "windows": 3,
        "drops": {"audio_s": 0.0, "windows": 0}, "queue_s": 0.1, "latency_ms": {"p50": 30.0, "p99": None},
        "restarts": 0, "seq": 8}})
    assert decode(encode(st)) == st
    leveled = events.window_event("studio", 7, 1.0, 4.0, 0.0, PROBS / PROBS.sum(), CLASSES, [], 1.0, "m", True, -18.5)
    assert "level_db" not in w and decode(encode(leveled))["level_db"] == -18.5
    assert [events.topic(e) for e in (w, s, st)] == ["window.studio", "segment.studio", "status"]


def test_a_window_that_names_no_instrument_says_why():
    w = events.window_event("studio", 7, 1.0, 4.0, 1_700_000_000.25, PROBS / PROBS.sum(), CLASSES, [], 12.5,
                            "cross-abc", True, level_db=-31.26, none="no instrument")
    assert w["none"] == "no instrument" and w["labels"] == [] and w["level_db"] == -31.3
    assert decode(encode(w)) == w
    with pytest.raises(EventError, match="none"):
        events.validate({**w, "none": "jazz"})


@pytest.mark.parametrize("over, fragment", [
    ({"schema": 2}, "schema: 2"),
    ({"seq": -1}, "window.seq: must be >= 0"),
    ({"seq": 1.5}, "window.seq: must be integer"),
    ({"stream": "../etc"}, "window.stream: must match"),
    ({"top": "banjo"}, "window.top: must be one of"),
    ({"labels": ["pia", "kazoo"]}, "window.labels[1]"),
    ({"probabilities": {c: 0.1 for c in CLASSES[:10]}}, "missing 'voi'"),
    ({"wall_time": "yesterday"}, "window.wall_time"),
    ({"extra": 1}, "unexpected field 'extra'"),
    ({"level_db": 3.0}, "window.level_db: must be <= 0"),
    ({"level_db": None}, "window.level_db: must be number"),
])
def test_validation_names_the_bad_field(over, fragment):
    with pytest.raises(EventError) as err:
        decode(json.dumps(window(**over)))
    assert fragment in str(err.value)


def test_not_json_and_nan_are_refused():
    with pytest.raises(EventError, match="not JSON"):
        decode(b"\xff{")
    with pytest.raises(ValueError):
        encode(window(latency_ms=float("nan")))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float32("nan"), np.float64("inf")])
def test_a_nan_or_infinity_anywhere_is_refused_not_written_as_null(bad):
    probabilities = dict(window()["probabilities"], cel=bad)
    status = {"studio": {"drops": {"audio_s": bad, "windows": 0}, "reasons": ["a", None, 1, True]}}
    for event in (window(latency_ms=bad), window(probabilities=probabilities), window(labels=["pia", bad]),
                  {"type": "status", "streams": status}):
        with pytest.raises(ValueError, match="NaN or infinity"):
            encode(event)


def test_encoding_is_compact_json_that_numpy_numbers_and_any_text_go_through():
    e = window(latency_ms=np.float64(12.25), seq=np.int64(7), none="no instrument (Geräusch)")
    body = encode(e)
    assert b", " not in body and b": " not in body
    assert json.loads(body) == dict(e, latency_ms=12.25, seq=7)
    big = {"type": "status", "values": [1e308, 1e308, "x"], "more": [1e308, 1e308]}  # a sum past the largest float
    assert json.loads(encode(big)) == big
    named = events.source_event("a", 0, "running", "reading /music/caf\udce9.wav", "a=file:/music/caf\udce9.wav", 0.0)
    assert decode(encode(named)) == named  # a name that is not UTF-8: its bytes kept as surrogates, escaped


def test_schema_file_lists_the_model_classes():
    schema = events.schema()
    assert schema["$defs"]["class"]["enum"] == list(CLASSES)
    assert schema["$defs"]["window"]["properties"]["probabilities"]["required"] == list(CLASSES)


def test_source_events_carry_a_lifecycle_state_and_a_reason():
    e = events.source_event("radio", 12, "down", "ffmpeg exited (code 0)", "radio=ffmpeg:http://x/live", 1_700_000_000.0)
    assert decode(encode(e)) == e and events.topic(e) == "source.radio"
    for state in events.SOURCE_STATES:
        decode(encode({**e, "state": state}))
    assert events.schema()["$defs"]["source"]["properties"]["state"]["enum"] == list(events.SOURCE_STATES)
    with pytest.raises(EventError, match="source.state: must be one of"):
        decode(encode({**e, "state": "restarting"}))
    with pytest.raises(EventError, match="source: missing 'reason'"):
        decode(encode({k: v for k, v in e.items() if k != "reason"}))
    s = events.segment_event("radio", 13, "pia", "end", 1.0, 9.0, "source failed", 1_700_000_000.0, "cross-abc")
    assert decode(encode(s)) == s


def test_wall_times_in_one_pass_read_as_datetime_writes_each():
    rng = np.random.default_rng(3)
    epochs = np.concatenate([1.7e9 + rng.uniform(0, 3e7, 2000), [0.0, 1_700_000_000.25, 1_700_000_000.9999996,
                                                                 1_700_000_000.0004995, 1_699_999_999.9995]])
    assert events.wall_times(epochs) == [events.wall_time(float(e)) for e in epochs]


@pytest.mark.parametrize("n", [events.TOGETHER_FROM - 1, 50])
def test_a_steps_window_events_built_together_are_each_windows_event(n):
    rng = np.random.default_rng(n)
    probs = rng.dirichlet(np.ones(11), n).astype(np.float32)
    probs[0] = 1 / 11  # equal probabilities: the first class is the top, as max() takes it
    levels = [None if k % 7 == 0 else float(rng.uniform(-90, 0)) for k in range(n)]
    nones = ["silence" if k % 5 == 0 else None for k in range(n)]
    latency = rng.uniform(-5, 500, n)
    built = events.window_events([f"s{k % 4}" for k in range(n)], list(range(n)), rng.uniform(0, 1e4, n),
                                 rng.uniform(0, 1e4, n), 1.7e9 + rng.uniform(0, 1e6, n), probs, CLASSES,
                                 [[] if nones[k] else ["pia"] for k in range(n)], latency, "cross-abc", True,
                                 level_db=levels, none=nones)
    assert len(built) == n and built[0]["top"] == CLASSES[0]
    for k, e in enumerate(built):
        events.validate(e)
        assert decode(encode(e)) == e
        assert e["seq"] == k and e["stream"] == f"s{k % 4}" and e["none"] == nones[k]
        got = np.array([e["probabilities"][c] for c in CLASSES])
        assert np.abs(got - probs[k]).max() <= 5e-7 and e["top"] == CLASSES[int(np.argmax(got))]
        assert e["latency_ms"] == round(max(0.0, latency[k]), 2)
        assert ("level_db" in e) == (levels[k] is not None)
        if levels[k] is not None:
            assert e["level_db"] == round(levels[k], 1)
        single = events.window_event(e["stream"], k, e["t_start"], e["t_end"], 0.0, probs[k], CLASSES,
                                     e["labels"], latency[k], "cross-abc", True, level_db=levels[k], none=nones[k])
        single["wall_time"] = e["wall_time"]
        assert encode(single) == encode(e)  # the same fields, values and order as the one-window builder's


@pytest.mark.parametrize("n", [events.TOGETHER_FROM - 1, 10])
@pytest.mark.parametrize("field", ["probabilities", "t_end", "latency_ms", "level_db"])
def test_a_step_with_a_nan_or_infinity_is_refused_before_encode_skips_its_check(n, field):
    values = {"probabilities": np.full((n, 11), 1 / 11), "t_end": [3.0] * n, "latency_ms": [5.0] * n,
              "level_db": [-20.0] * n}
    bad = np.nan if field != "level_db" else -np.inf
    if field == "probabilities":
        values[field][n - 1, 4] = bad
    else:
        values[field][n - 1] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        events.window_events(["s"] * n, list(range(n)), [0.0] * n, values["t_end"], [1.7e9] * n,
                             values["probabilities"], CLASSES, [[]] * n, values["latency_ms"], "m", True,
                             level_db=values["level_db"])
    fine = events.window_events(["s"] * n, list(range(n)), [0.0] * n, [3.0] * n, [1.7e9] * n,
                                np.full((n, 11), 1 / 11), CLASSES, [[]] * n, [5.0] * n, "m", True,
                                level_db=[None] * n)
    assert [decode(encode(e, checked=True)) for e in fine] == fine
    with pytest.raises(ValueError):  # encode's own check, for events built elsewhere
        encode({**fine[0], "latency_ms": float("nan")})
