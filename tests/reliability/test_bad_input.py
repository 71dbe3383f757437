"""Bad input: one clear line naming the bad value, never a traceback, and a daemon that keeps its other streams."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import safetensors
import safetensors.torch
import soundfile
import torch

from instrumentd.clients.cli import main
from instrumentd.daemon.config import parse_source
from instrumentd.daemon.events import decode
from instrumentd.daemon.sources import StdinSource
from instrumentd.model import checkpoint
from instrumentd.model.networks import build
from instrumentd.model.recognizer import DEFAULT_CHECKPOINT, Recognizer
from instrumentd.pipeline import FeatureExtractor
from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.config import FeatureConfig
from instrumentd.pipeline.pitch import DEFAULT_ENGINE

from ..conftest import free_port, one_line_error, read_log
from .conftest import SR, melody, samples_with, windows_of

RATES = (8000, 11025, 16000, 22050, 32000, 48000, 88200, 96000, 176400, 192000)  # hz


# -- files -------------------------------------------------------------------------------------

def test_classify_names_each_bad_file_in_one_line_and_still_labels_the_good_one(bad_files, wav, capsys):
    good = wav(3.2)
    paths = [str(p) for p in bad_files.values()]
    assert main(["classify", *paths, str(good), "--format", "jsonl", "--device", "cpu"]) == 1  # ran; the bad files could not be read
    out = capsys.readouterr()
    records = [json.loads(line) for line in out.out.splitlines()]
    by_path = {r["path"]: r for r in records}
    assert "Traceback" not in out.err
    for name, path in bad_files.items():
        error = by_path[str(path)]["error"]
        assert str(path) in error and "\n" not in error, name
    assert "error" not in by_path[str(good)] and len(by_path[str(good)]["windows"]) == 2


@pytest.mark.parametrize("rate", RATES)
def test_any_rate_8_to_192_khz_and_1_to_8_channels_load_at_44_1_khz(rate, tmp_path):
    for channels in (1, 2, 6, 8):
        path = tmp_path / f"{rate}-{channels}.flac"
        x = melody(0.5, rate, channels)
        x[:, 1:] *= 0.5  # channels differ: the mean is what counts
        soundfile.write(path, x, rate, subtype="PCM_24")
        audio = load_audio(path)
        assert audio.dtype == np.float32 and len(audio) == pytest.approx(SR / 2, abs=2)
        assert np.all(np.isfinite(audio))
        rms = np.sqrt(np.mean(audio**2))
        want = np.sqrt(np.mean(x.mean(axis=1) ** 2))
        assert rms == pytest.approx(want, rel=0.05), (rate, channels)  # the mean of the channels, resampled


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer.from_checkpoint(None, "cpu")


@pytest.mark.parametrize("kind", ["nan_inf", "dc", "clipped", "silent", "huge"])
def test_nan_inf_dc_clipped_silent_and_huge_samples_give_finite_probabilities(kind, recognizer, tmp_path):
    path = tmp_path / f"{kind}.wav"
    soundfile.write(path, samples_with(kind), SR, subtype="FLOAT")
    audio = load_audio(path)
    assert np.all(np.isfinite(audio)) and np.all(np.abs(audio) <= 1)
    result = recognizer.classify_clip(audio, FeatureExtractor(recognizer.features, DEFAULT_ENGINE, "cpu"))
    assert np.all(np.isfinite(result.window_probs))
    np.testing.assert_allclose(result.window_probs.sum(axis=1), 1, atol=1e-4)


def test_stdin_pcm_cut_mid_frame_keeps_every_whole_frame_and_says_so(caplog):
    read_fd, write_fd = os.pipe()
    pcm = (melody(0.2, 48000, 2) * 32767).astype("<i2").tobytes() + b"\x01\x02\x03"  # 3 bytes of a 4-byte frame
    reader = os.fdopen(read_fd, "rb")
    source = StdinSource(parse_source("in=stdin:s16le:48000:2"), 10.0, stream=reader)
    writer = threading.Thread(target=lambda: (os.write(write_fd, pcm), os.close(write_fd)))
    with caplog.at_level(logging.WARNING, "instrumentd.daemon.sources"):
        writer.start()
        source.start()
        writer.join()
        source._thread.join(10)
    reader.close()
    assert source.state == "ended" and source.ring.written == 9600  # 0.2 s of whole frames
    assert "ended mid-frame; the last 3 byte(s) of a 4-byte frame dropped" in caplog.text


# -- settings, flags and devices -----------------------------------------------------------------

@pytest.mark.parametrize("toml, fragments", [
    ("hop = [1, 2", ("not valid TOML",)),
    ("hop = 0.5\nhop = 0.6\n", ("not valid TOML",)),
    ("hopp = 0.5\n", ("unknown settings hopp",)),
    ('hop = "fast"\n', ("hop = 'fast'",)),
    ("hop = 99.0\n", ("hop_s (--hop) must be", "99.0")),
    ("max_batch = 1.5\n", ("max_batch = 1.5",)),
    ("heartbeat = inf\n", ("heartbeat must be a finite number",)),
    ('sources = ["tape:x.wav"]\n', ("'tape'",)),
    ('pub = "tcp://0.0.0.0:5555"\n', ("reachable from other machines",)),
    ("\x00\xff", ("not UTF-8 text",)),
])
def test_a_malformed_config_file_is_one_line(toml, fragments, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_bytes(toml.encode("latin-1"))
    assert main(["serve", "--config", str(path), "--print-config"]) == 2
    one_line_error(capsys.readouterr().err, "serve", *fragments)


@pytest.mark.parametrize("flags, fragments", [
    (["--hop", "99"], ("hop_s (--hop) must be", "99")),
    (["--hop", "nan"], ("nan",)),
    (["--source", "tape:x.wav"], ("'tape'",)),
    (["--source", "stdin:s16le:48000"], ("FORMAT:RATE:CHANNELS",)),
    (["--source", "a=file:x.wav", "--source", "a=file:y.wav"], ("a repeated",)),
    (["--pub", "udp://1.2.3.4:5"], ("'udp://1.2.3.4:5'",)),
    (["--device", "gpu"], ("'gpu'",)),
    (["--config", "/nonexistent/x.toml"], ("/nonexistent/x.toml", "cannot read")),
    (["--curve-clients", "keys/clients"], ("needs curve_key",)),
])
def test_malformed_flags_are_one_line(flags, fragments, capsys):
    assert main(["serve", "--source", "file:x.wav", *flags, "--print-config"]) == 2
    one_line_error(capsys.readouterr().err, "serve", *fragments)


@pytest.mark.parametrize("toml, fragments", [
    ("ring_seconds = 1e12\n", ("ring_seconds must be at most 3600",)),
    ("sndhwm = 99999999999999999999\n", ("sndhwm must be at most 1000000",)),
    ("pitch_lag = 100000000\n", ("pitch_lag must be at most 1000",)),
    ("cpu_threads = 100000\n", ("cpu_threads must be at most",)),
    ("max_batch = 100000000\n", ("max_batch must be at most",)),
    ("hop = " + "[" * 100_000 + "\n", ("nested too deeply",)),
    ("x = " + "{a=" * 100_000 + "\n", ("nested too deeply",)),
    ("# " + "x" * (1 << 21) + "\n", ("larger than",)),
])
def test_settings_that_cannot_be_honoured_are_one_line(toml, fragments, tmp_path, capsys):
    path = tmp_path / "big.toml"
    path.write_text(toml)
    assert main(["serve", "--config", str(path), "--source", "file:x.wav", "--print-config"]) == 2
    one_line_error(capsys.readouterr().err, "serve", *fragments)


def test_streams_that_cannot_fit_in_memory_are_refused_at_start_up(tmp_path, capsys):
    from instrumentd.daemon.config import Config
    from instrumentd.daemon.resources import available_bytes, needed_bytes

    sources = [f"s{i}=file:{tmp_path}/none-{i}.wav" for i in range(64)]
    free = available_bytes()
    if free is None or needed_bytes(Config(ring_seconds=3600.0), 64) < free:
        pytest.skip("this machine has room for 64 hour-long rings")
    args = ["serve", "--log-dir", str(tmp_path / "ev"), "--device", "cpu", "--replay", ""]
    for source in sources:
        args += ["--source", source]
    os.environ["INSTRUMENTD_RING_SECONDS"] = "3600"
    try:
        assert main(args) == 3
    finally:
        del os.environ["INSTRUMENTD_RING_SECONDS"]
    one_line_error(capsys.readouterr().err, "serve", "64 stream(s)", "GiB is free", "ring_seconds")


def test_classify_on_a_path_longer_than_the_system_allows_is_one_line(capsys):
    long_path = "a/" * 2100 + "x.wav"
    assert main(["classify", long_path]) == 2
    one_line_error(capsys.readouterr().err, "classify", "4205 bytes", "longer than the system allows")


def test_flags_argparse_cannot_parse_end_in_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--hop", "fast"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "instrumentd serve: error: argument --hop: invalid float value: 'fast'"


@pytest.mark.parametrize("source, fragments", [
    ("mic:nonexistent", ("'nonexistent'",)),
    ("file:/nonexistent/take.wav", ("/nonexistent/take.wav",)),
])
def test_an_unknown_device_or_file_as_the_only_source_is_one_line(source, fragments, capsys):
    assert main(["serve", "--source", source, "--device", "cpu", "--log-dir", ""]) == 2
    one_line_error(capsys.readouterr().err, "serve", *fragments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU-only machine")
@pytest.mark.parametrize("command", ["serve", "classify"])
def test_a_cuda_device_on_a_cpu_machine_is_one_line(command, wav, capsys):
    clip = str(wav(3.2))
    args = ["--source", f"file:{clip}", "--log-dir", "", "--replay", ""] if command == "serve" else [clip]
    assert main([command, *args, "--device", "cuda:7"]) == 2
    one_line_error(capsys.readouterr().err, command, "'cuda:7'", "--device cpu")


@pytest.mark.gpu
def test_a_cuda_device_past_the_last_gpu_is_one_line(wav, capsys):
    bad = f"cuda:{torch.cuda.device_count() + 6}"
    assert main(["classify", str(wav(3.2)), "--device", bad]) == 2
    one_line_error(capsys.readouterr().err, "classify", f"'{bad}'")


# -- checkpoints ---------------------------------------------------------------------------------

def _rewrite_metadata(src, dst, change):
    with safetensors.safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()[checkpoint.METADATA_KEY])
    change(meta)
    safetensors.torch.save_file(safetensors.torch.load_file(str(src)), str(dst),
                                metadata={checkpoint.METADATA_KEY: json.dumps(meta)})
    return dst


@pytest.fixture
def bad_checkpoints(tmp_path):
    data = DEFAULT_CHECKPOINT.read_bytes()
    out = {}
    out["truncated"] = tmp_path / "truncated.safetensors"
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["garbage"] = tmp_path / "garbage.safetensors"
    out["garbage"].write_bytes(os.urandom(4096))
    tampered = bytearray(data)
    tampered[-5] ^= 0x40  # one bit of one weight
    out["tampered"] = tmp_path / "tampered.safetensors"
    out["tampered"].write_bytes(bytes(tampered))
    out["other_classes"] = tmp_path / "three.safetensors"
    checkpoint.save(out["other_classes"], build("cross", 3), "cross", FeatureConfig(), classes=("a", "b", "c"))
    out["bad_features"] = _rewrite_metadata(DEFAULT_CHECKPOINT, tmp_path / "feat.safetensors",
                                            lambda m: m["features"].update(hop_length=0))
    out["unknown_feature"] = _rewrite_metadata(DEFAULT_CHECKPOINT, tmp_path / "feat2.safetensors",
                                               lambda m: m["features"].update(colour="blue"))
    out["bad_variant"] = _rewrite_metadata(DEFAULT_CHECKPOINT, tmp_path / "variant.safetensors",
                                           lambda m: m.update(variant="transformer"))
    out["missing"] = tmp_path / "missing.safetensors"
    for kind, value in (("nan_weights", float("nan")), ("inf_weights", float("inf"))):
        model = build("cross", 11)
        with torch.no_grad():
            next(model.parameters())[0].fill_(value)  # a diverged training run
        out[kind] = tmp_path / f"{kind}.safetensors"
        checkpoint.save(out[kind], model, "cross", FeatureConfig())
    weights = safetensors.torch.load_file(str(DEFAULT_CHECKPOINT))
    deep_object: dict = {}
    for _ in range(100):
        deep_object = {"x": deep_object}
    for kind, raw in (("metadata_list", "[1, 2, 3]"), ("metadata_deep", "[" * 100_000 + "]" * 100_000),
                      ("metadata_deep_object", json.dumps({"format": 1, "variant": "cross", "x": deep_object}))):
        out[kind] = tmp_path / f"{kind}.safetensors"
        safetensors.torch.save_file(weights, str(out[kind]), metadata={checkpoint.METADATA_KEY: raw})
    out["huge_n_mels"] = _rewrite_metadata(DEFAULT_CHECKPOINT, tmp_path / "mels.safetensors",
                                           lambda m: m["features"].update(n_mels=100_000))
    return out


REASONS = {"truncated": "not a readable safetensors", "garbage": "not a readable safetensors",
           "tampered": "do not match their recorded digest", "other_classes": "is for classes ['a', 'b', 'c']",
           "bad_features": "bad feature config", "unknown_feature": "bad feature config",
           "bad_variant": "unknown model variant 'transformer'", "missing": "no such checkpoint",
           "nan_weights": "NaN or infinity", "inf_weights": "NaN or infinity", "metadata_list": "not an object",
           "metadata_deep": "not valid JSON", "metadata_deep_object": "nested more than 32 deep",
           "huge_n_mels": "features.n_mels = 100000"}


@pytest.mark.parametrize("command", ["classify", "serve"])
def test_every_bad_checkpoint_is_one_line_through_the_command_line(command, bad_checkpoints, wav, capsys):
    clip = str(wav(3.2))
    args = ["--source", f"file:{clip}", "--log-dir", "", "--replay", ""] if command == "serve" else [clip]
    for kind, path in bad_checkpoints.items():
        assert main([command, *args, "--checkpoint", str(path), "--device", "cpu"]) == 2, kind
        one_line_error(capsys.readouterr().err, command, str(path), REASONS[kind])


def test_a_checkpoint_for_another_valid_feature_config_brings_its_own(tmp_path):
    """A 10 ms hop (300-frame windows) is a supported setting: the daemon and classify follow the checkpoint."""
    path = _rewrite_metadata(DEFAULT_CHECKPOINT, tmp_path / "hop10.safetensors",
                             lambda m: m["features"].update(hop_length=441))
    rec = Recognizer.from_checkpoint(path, "cpu")
    assert rec.features.hop_length == 441 and rec.features.n_frames == 300


# -- a daemon with bad streams next to good ones --------------------------------------------------

@pytest.mark.slow
def test_a_fifo_a_closed_stdin_and_a_non_utf8_name_leave_the_other_streams_running(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    odd = os.fsdecode(bytes(tmp_path) + b"/take-\xff\xfe.wav")  # not UTF-8: a surrogate-escaped str
    soundfile.write(os.fsencode(odd), melody(3.5), SR, subtype="PCM_16")
    good = tmp_path / "good.wav"
    soundfile.write(good, melody(3.5), SR, subtype="PCM_16")
    log_dir = tmp_path / "events"
    args = [sys.executable, "-m", "instrumentd", "serve", "--log-dir", str(log_dir), "--device", "cpu",
            "--pub", f"tcp://127.0.0.1:{free_port()}", "--replay", "", "--hop", "1.0"]
    for source in ("stdin:f32le:44100:1", f"odd=file+fast:{odd}", f"fifo=file+fast:{fifo}", f"good=file+fast:{good}"):
        args += ["--source", source]
    # stdin closed (not at its end: there is no file descriptor 0 at all)
    run = subprocess.run(args, preexec_fn=lambda: os.close(0), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert len(windows_of(read_log(log_dir, "good"))) == 1 and len(windows_of(read_log(log_dir, "odd"))) == 1
    failed = sorted(line for line in run.stderr.splitlines() if "the other streams go on" in line)
    assert len(failed) == 2, run.stderr
    assert any("is not a regular file" in ln for ln in failed) and any("stdin is closed" in ln for ln in failed), failed


@pytest.mark.slow
def test_a_daemon_runs_its_good_streams_next_to_bad_files(daemon, subscriber, bad_files, tmp_path):
    good = {}
    for name, (sr, ch) in {"good": (SR, 1), "lo": (8000, 8), "hi": (192000, 6)}.items():
        good[name] = tmp_path / f"{name}.flac"
        soundfile.write(good[name], melody(3.5, sr, ch), sr, subtype="PCM_16")
    for kind in ("nan_inf", "huge", "dc", "silent"):
        good[kind] = tmp_path / f"{kind}.wav"
        soundfile.write(good[kind], samples_with(kind, 3.5), SR, subtype="FLOAT")
    # a FLAC whose middle is destroyed: it opens, then fails while being read
    broken = tmp_path / "broken.flac"
    soundfile.write(broken, melody(8.0), SR, subtype="PCM_16")
    data = bytearray(broken.read_bytes())
    data[len(data) * 2 // 3 :] = os.urandom(len(data) - len(data) * 2 // 3)
    broken.write_bytes(bytes(data))
    sources = [f"{n}=file+fast:{p}" for n, p in good.items()]
    sources += [f"{n.replace('_', '-')}=file+fast:{p}" for n, p in bad_files.items()] + [f"broken=file+fast:{broken}"]
    d = daemon(sources, "--hop", "1.0")
    sub = subscriber(d.pub, ("status",))
    assert d.wait(120) == 0, d.log_text()
    text = d.log_text()
    assert "Traceback" not in text
    for name in good:
        wins = windows_of(read_log(d.log_dir, name))
        assert len(wins) == 1, (name, text)  # 3.5 s at a 1 s hop
        decode(json.dumps(wins[0]))
        assert abs(sum(wins[0]["probabilities"].values()) - 1) < 1e-3
    failed = [line for line in text.splitlines() if "the other streams go on" in line]
    unopened = {"empty", "text", "truncated_header", "corrupt_header", "png"}
    assert len(failed) == len(unopened), text
    for name in unopened:
        assert any(str(bad_files[name]) in line for line in failed), name
    # a file with a header and no audio simply ends
    assert [e["state"] for e in read_log(d.log_dir, "no-samples")] == ["starting", "ended"]
    assert len(windows_of(read_log(d.log_dir, "broken"))) >= 1  # what decoded before the damage was used
    # libsndfile words the damage differently from run to run ("lost sync", "unknown error in flac decoder")
    assert any("source broken failed: " in line for line in text.splitlines()), text
    got = []
    while sub.socket.poll(100):
        got.append(decode(sub.socket.recv_multipart()[1]))
    final = got[-1]["streams"]  # the heartbeat sent at shutdown
    assert {n for n, st in final.items() if st["state"] == "failed"} == {n.replace("_", "-") for n in unopened} | {"broken"}
    assert all(final[n]["state"] == "ended" for n in good)
