"""Non-music check set: a real tiny set in the IRMAS test layout with empty labels."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile

from instrumentd.pipeline.errors import ParameterError
from instrumentd.training import nonmusic
from instrumentd.training.render import RenderError, find_soundfont


def test_tiny_check_set_has_every_kind_and_no_labels(tmp_path):
    if shutil.which("fluidsynth") is None or shutil.which("espeak-ng") is None:
        pytest.skip("fluidsynth or espeak-ng not installed (make system-deps)")
    try:
        find_soundfont("timgm6mb")
    except RenderError:
        pytest.skip("TimGM6mb not installed (make system-deps)")
    paths = nonmusic.write_check_set(tmp_path, clips=1, seed=3, soundfont="timgm6mb")
    assert len(paths) == len(nonmusic.KINDS)
    for path in paths:
        audio, sr = soundfile.read(path, dtype="float32")
        assert sr == 44100 and 5.0 <= len(audio) / sr <= 10.0
        assert path.with_suffix(".txt").read_text() == ""
        if "silence" in path.name:
            assert not audio.any()
        else:
            assert -12.1 <= 20 * np.log10(np.abs(audio).max()) <= -0.9
    assert sorted(tmp_path.glob("*.wav")) == sorted(paths)


def test_no_clips_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="--clips must be >= 1"):
        nonmusic.write_check_set(tmp_path, clips=0)
