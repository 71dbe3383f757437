"""``instrumentd synth-nonmusic``, the real command: a check set of every kind with empty labels, one-line errors."""

from __future__ import annotations

import pytest

from instrumentd.training.nonmusic import KINDS

from ...conftest import instrumentd, one_line_error


@pytest.mark.slow
def test_one_clip_of_every_kind_with_no_labels(tmp_path, fluidsynth_available):
    out = tmp_path / "nonmusic"
    run = instrumentd("synth-nonmusic", str(out), "--clips", "1", "--soundfont", "timgm6mb")
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"{len(KINDS)} non-music clips in {out}" in run.stdout
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == len(KINDS) and all(w.with_suffix(".txt").read_text() == "" for w in wavs)


def test_no_clips_is_one_line(tmp_path):
    run = instrumentd("synth-nonmusic", str(tmp_path / "n"), "--clips", "0")
    assert run.returncode == 2
    one_line_error(run.stderr, "synth-nonmusic", "--clips must be >= 1, got 0")
