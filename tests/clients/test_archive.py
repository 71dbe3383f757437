"""Archive tagging (``classify --segments``): windows of many files batched, segments as one file at a time."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from instrumentd.clients.archive import tag_files
from instrumentd.daemon.segments import segment
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline import FeatureExtractor, load_audio

from ..conftest import side_by_side, tone

SR = 44100


def _run(*args):
    return subprocess.run([sys.executable, "-m", "instrumentd", "classify", *args],
                          capture_output=True, text=True, timeout=300)


# ---- batching on real renders -------------------------------------------------------------

@pytest.mark.slow
def test_batches_across_files_match_one_file_at_a_time(tmp_path, renders):
    from instrumentd.model.recognizer import Recognizer

    files = []
    for name, audio in [("a", np.concatenate([renders["flute"], renders["piano"][:SR]])), ("b", renders["violin"][:SR]),
                        ("c", np.concatenate([renders["mix"], renders["violin"][:SR]]))]:
        files.append(tmp_path / f"{name}.wav")
        soundfile.write(files[-1], audio, SR, subtype="FLOAT")
    rec = Recognizer.from_checkpoint(device="cpu", batch_size=2)  # batches of 2 windows straddle the files
    extractor = FeatureExtractor(rec.features, device=rec.device)
    tagged = list(tag_files(files, rec, extractor, 1.5, smooth=1, on=0.05, off=0.05))
    assert [t["path"] for t in tagged] == [str(f) for f in files]
    for f, t in zip(files, tagged):
        audio = load_audio(f)
        clip = rec.classify_clip(audio, extractor, 1.5)
        expect = segment(clip.window_probs, clip.window_starts, 3.0, len(audio) / SR, CLASSES, smooth=1,
                         on=0.05, off=0.05)
        assert t["windows"] == len(clip.window_probs)
        assert [(s["instrument"], s["start"], s["end"]) for s in t["segments"]] == \
            [(s.instrument, round(s.start, 3), round(s.end, 3)) for s in expect]
        assert [s["mean_probability"] for s in t["segments"]] == \
            pytest.approx([s.mean_probability for s in expect], abs=1e-5)


@pytest.mark.gpu
def test_tagging_on_cuda_matches_cpu(tmp_path, monkeypatch):
    from instrumentd.model.recognizer import Recognizer

    files = []
    for i, freqs in enumerate([(220.0, 330.0), (440.0, 262.0, 523.0)]):
        files.append(tmp_path / f"{i}.wav")
        soundfile.write(files[-1], np.concatenate([tone(f, 2.0) for f in freqs]), SR)

    def tag(device):
        rec = Recognizer.from_checkpoint(device=device, batch_size=3)
        return list(tag_files(files, rec, FeatureExtractor(rec.features, device=rec.device), 1.0,
                              smooth=1, on=0.05, off=0.05))

    cpu = tag("cpu")
    # torch runs cuDNN's fp32 convolutions in TF32 by default (10-bit mantissas): the segments stay the
    # same, their mean probabilities move by about 1e-3 (0.0016 on these tones); in true fp32 the CUDA
    # pipeline (features, pitch kernels, network) matches the CPU's to 1e-5
    for tf32, tolerance in ((True, 5e-3), (False, 1e-5)):
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
        for c, g in zip(cpu, tag("cuda")):
            assert [(s["instrument"], s["start"], s["end"]) for s in c["segments"]] == \
                [(s["instrument"], s["start"], s["end"]) for s in g["segments"]]
            assert [s["mean_probability"] for s in c["segments"]] == \
                pytest.approx([s["mean_probability"] for s in g["segments"]], abs=tolerance)


# ---- the command ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory, renders):
    """A folder: flute then violin (6 s, stereo), violin then flute (6 s, 48 kHz), a file that is not audio."""
    import soxr

    root = tmp_path_factory.mktemp("archive")
    joined = np.concatenate([renders["flute"], renders["violin"]])
    soundfile.write(root / "a-flute-violin.wav", np.stack([joined, joined], 1), SR)
    back = np.concatenate([renders["violin"], renders["flute"]])
    soundfile.write(root / "b-violin-flute.flac", soxr.resample(back, SR, 48000), 48000)
    (root / "c-broken.wav").write_bytes(b"RIFF....WAVE")
    return root


def _spans(segs, instrument):
    return [(s["start"], s["end"]) for s in segs if s["instrument"] == instrument]


@pytest.mark.slow
def test_boundary_found_near_the_join(archive, fitted):
    """Two renders end to end: one segment each, meeting within a window hop of the join at 3 s."""
    out, csv_out = side_by_side(
        lambda: _run(str(archive), "--segments", "--format", "jsonl", "--hop", "0.5", "--checkpoint", str(fitted)),
        lambda: _run(str(archive / "a-flute-violin.wav"), "--segments", "--format", "csv", "--hop", "0.5",
                     "--checkpoint", str(fitted)))
    assert out.returncode == 1, out.stderr  # ran, but the broken file could not be read
    records = [json.loads(line) for line in out.stdout.splitlines()]
    names = [r["path"].rsplit("/", 1)[1] for r in records]
    assert names == ["a-flute-violin.wav", "b-violin-flute.flac", "c-broken.wav"]
    fv, vf, broken = records
    assert (fv["duration"], fv["windows"], vf["duration"], vf["windows"]) == (6.0, 7, 6.0, 7)
    assert "c-broken.wav" in broken["error"] and "segments" not in broken
    for rec, first, second in ((fv, "flu", "vio"), (vf, "vio", "flu")):
        assert {s["instrument"] for s in rec["segments"]} == {first, second}
        (a_start, a_end), = _spans(rec["segments"], first)
        (b_start, b_end), = _spans(rec["segments"], second)
        assert a_start == 0.0 and b_end == 6.0 and a_end == b_start
        # a window straddling the join may be called either instrument: the boundary lies within half a
        # window (1.5 s) of the join, on the window-centre grid
        assert abs(a_end - 3.0) <= 1.5
        assert all(s["mean_probability"] > 0.5 for s in rec["segments"])  # straddling windows lower the mean

    assert csv_out.returncode == 0, csv_out.stderr  # the first file alone, as CSV: the same segments
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert list(rows[0]) == ["path", "start", "end", "instrument", "mean_probability", "error"]
    assert [(r["instrument"], float(r["start"]), float(r["end"])) for r in rows] == \
        [(s["instrument"], s["start"], s["end"]) for s in fv["segments"]]


@pytest.mark.slow
def test_untrained_default_says_so(archive):
    out = _run(str(archive / "a-flute-violin.wav"), "--segments", "--format", "jsonl", "--hop", "3")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["windows"] == 2 and isinstance(rec["segments"], list)
    if not rec["trained"]:
        assert "UNTRAINED" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["--smooth", "0"], "--smooth"),
    (["--on", "0.2", "--off", "0.4"], "--off 0.4"),
    (["--hop", "-1"], "--hop"),
])
def test_cli_bad_settings_are_one_line(archive, args, message):
    out = _run(str(archive / "a-flute-violin.wav"), "--segments", *args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr
