import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from instrumentd.clients.segments import Segment, _Windows, segment, tag_files, window_cells
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline import DEFAULT, FeatureExtractor, ParameterError, cut_windows, load_audio

from ..conftest import tone

SR = 44100


def _run(*args):
    return subprocess.run([sys.executable, "-m", "instrumentd", "classify", *args],
                          capture_output=True, text=True, timeout=300)


# ---- the segmenter on hand-built probabilities ---------------------------------------------------

def test_cells_split_halfway_between_window_centres():
    start, end = window_cells(np.array([0.0, 1.0, 2.0, 2.5]), 3.0, 5.5)
    np.testing.assert_allclose(start, [0.0, 2.0, 3.0, 3.75])
    np.testing.assert_allclose(end, [2.0, 3.0, 3.75, 5.5])


def _switch(n_first: int, n_second: int, a: int, b: int) -> np.ndarray:
    p = np.full((n_first + n_second, len(CLASSES)), 0.01)
    p[:n_first, a] = p[n_first:, b] = 0.9
    return p


def test_segments_of_a_switch_exact_times():
    pia, vio = CLASSES.index("pia"), CLASSES.index("vio")
    p = _switch(5, 5, pia, vio)
    starts = np.arange(10.0)  # 1 s hop, 3 s windows, 12 s file: centres 1.5 .. 10.5, cells split at 2, 3, ... 11
    segs = segment(p, starts, 3.0, 12.0, CLASSES, smooth=1)
    assert segs == [Segment("pia", 0.0, 6.0, pytest.approx(0.9), 5), Segment("vio", 6.0, 12.0, pytest.approx(0.9), 5)]
    # a moving average over the last 3 windows: at window 5 pia is (0.9 + 0.9 + 0.01) / 3 >= off and vio
    # (0.01 + 0.01 + 0.9) / 3 < on; at window 6 pia falls below off and vio reaches on
    segs = segment(p, starts, 3.0, 12.0, CLASSES, smooth=3, on=0.5, off=0.35)
    assert [(s.instrument, s.start, s.end, s.windows) for s in segs] == [("pia", 0.0, 7.0, 6), ("vio", 7.0, 12.0, 4)]
    assert segs[0].mean_probability == pytest.approx((5 * 0.9 + 0.01) / 6)
    assert segs[1].mean_probability == pytest.approx(0.9)


def test_hysteresis_keeps_a_dip_and_cuts_a_drop():
    sax = CLASSES.index("sax")
    p = np.zeros((6, len(CLASSES)))
    p[:, sax] = [0.2, 0.5, 0.4, 0.3, 0.45, 0.55]  # on at 0.5, stays at 0.4, ends at 0.3, stays off at 0.45
    segs = segment(p, np.arange(6) * 1.5, 3.0, 10.5, CLASSES, smooth=1, on=0.5, off=0.35)
    assert segs == [Segment("sax", 2.25, 5.25, pytest.approx(0.45), 2),
                    Segment("sax", 8.25, 10.5, pytest.approx(0.55), 1)]


def test_nothing_predominant_and_bad_settings():
    assert segment(np.full((4, 11), 1 / 11), np.arange(4.0), 3.0, 6.0, CLASSES) == []
    with pytest.raises(ParameterError, match="got 0"):
        segment(np.ones((3, 11)), np.arange(3.0), 3.0, 5.0, CLASSES, smooth=0)
    with pytest.raises(ParameterError, match="--off 0.6"):
        segment(np.ones((3, 11)), np.arange(3.0), 3.0, 5.0, CLASSES, on=0.5, off=0.6)


# ---- reading and batching on real renders -------------------------------------------------------------

@pytest.mark.parametrize("seconds,hop", [(7.3, 44100), (2.0, 22050), (6.0, 66150)])
def test_block_reader_gives_the_windows_of_cut_windows(tmp_path, renders, seconds, hop):
    audio = np.tile(np.concatenate([renders["flute"], renders["violin"]]), 2)[: int(seconds * SR)]
    path = tmp_path / "x.wav"
    soundfile.write(path, audio, SR, subtype="FLOAT")
    reader = _Windows(path, SR, DEFAULT.clip_samples, hop, block_seconds=0.7)
    got = list(reader)
    windows, starts = cut_windows(load_audio(path), DEFAULT.clip_samples, hop)
    assert [s for s, _ in got] == starts.tolist()
    np.testing.assert_array_equal(np.stack([w for _, w in got]), windows)
    assert reader.total == len(audio)


def test_block_reader_resamples_like_load(tmp_path, renders):
    import soxr

    path = tmp_path / "x48k.flac"
    soundfile.write(path, soxr.resample(np.concatenate([renders["piano"], renders["mix"]]), SR, 48000), 48000)
    got = list(_Windows(path, SR, DEFAULT.clip_samples, SR, block_seconds=1.1))
    windows, starts = cut_windows(load_audio(path), DEFAULT.clip_samples, SR)
    assert [s for s, _ in got] == starts.tolist()
    np.testing.assert_allclose(np.stack([w for _, w in got]), windows, atol=2e-3)


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
    out = _run(str(archive), "--segments", "--format", "jsonl", "--hop", "0.5", "--checkpoint", str(fitted))
    assert out.returncode == 2, out.stderr  # the broken file
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

    csv_out = _run(str(archive / "a-flute-violin.wav"), "--segments", "--format", "csv", "--hop", "0.5",
                   "--checkpoint", str(fitted))
    assert csv_out.returncode == 0, csv_out.stderr
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
