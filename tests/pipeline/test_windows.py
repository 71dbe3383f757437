import numpy as np
import pytest

from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.windows import cut_windows, window_starts


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
