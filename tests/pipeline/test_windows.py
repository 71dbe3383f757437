import numpy as np
import pytest
import soundfile

from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.errors import AudioError, ParameterError
from instrumentd.pipeline.windows import FileWindows, cut_windows, window_starts

from ..conftest import SR, tone

CLIP = 3 * SR


def test_starts_cover_the_clip():
    assert window_starts(10, 4, 2).tolist() == [0, 2, 4, 6]
    assert window_starts(11, 4, 2).tolist() == [0, 2, 4, 6, 7]
    assert window_starts(3, 4, 2).tolist() == [0]
    assert window_starts(4, 4, 2).tolist() == [0]


def test_cut_windows_values_and_padding():
    audio = np.arange(11, dtype=np.float32)
    windows, starts = cut_windows(audio, 4, 2)
    assert windows.shape == (5, 4)
    assert windows[-1].tolist() == [7, 8, 9, 10]
    short, _ = cut_windows(np.ones(3, np.float32), 4, 2)
    assert short.tolist() == [[1, 1, 1, 0]]


def test_bad_parameters():
    with pytest.raises(ParameterError):
        window_starts(10, 0, 1)
    with pytest.raises(ParameterError):
        cut_windows(np.zeros((2, 2)), 4, 2)


@pytest.mark.parametrize("seconds,hop", [(7.3, 44100), (2.0, 22050), (6.0, 66150)])
def test_file_windows_are_those_of_cut_windows(tmp_path, seconds, hop):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * SR)).astype(np.float32)
    path = tmp_path / "x.wav"
    soundfile.write(path, audio, SR, subtype="FLOAT")
    reader = FileWindows(path, SR, CLIP, hop, block_seconds=0.7)
    got = list(reader)
    windows, starts = cut_windows(load_audio(path), CLIP, hop)
    assert [s for s, _ in got] == starts.tolist()
    np.testing.assert_array_equal(np.stack([w for _, w in got]), windows)
    assert reader.total == len(audio)


def test_file_windows_resample_as_load_audio(tmp_path):
    path = tmp_path / "x48k.flac"
    soundfile.write(path, tone(440.0, 6.0, 48000) + tone(1234.5, 6.0, 48000, 0.2), 48000)
    got = list(FileWindows(path, SR, CLIP, SR, block_seconds=1.1))
    windows, starts = cut_windows(load_audio(path), CLIP, SR)
    assert [s for s, _ in got] == starts.tolist()
    np.testing.assert_allclose(np.stack([w for _, w in got]), windows, atol=2e-3)


def test_file_windows_of_a_missing_or_empty_file_are_one_line(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        list(FileWindows(tmp_path / "nope.wav", SR, CLIP, SR))
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="holds no audio samples"):
        list(FileWindows(empty, SR, CLIP, SR))
