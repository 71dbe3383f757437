import numpy as np
import pytest
import soundfile

from instrumentd.pipeline.audio import find_audio, load
from instrumentd.pipeline.errors import AudioError

from ..conftest import tone


@pytest.mark.parametrize("fmt,ext", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg"), ("MP3", ".mp3")])
def test_formats_rates_and_channels(tmp_path, fmt, ext):
    sr = 48000
    x = tone(1000.0, 1.0, sr)
    stereo = np.stack([x, x], axis=1)
    path = tmp_path / f"a{ext}"
    soundfile.write(path, stereo, sr, format=fmt)
    audio = load(path)
    assert audio.dtype == np.float32
    assert abs(len(audio) - 44100) <= 1200  # mp3 adds encoder delay and padding
    spectrum = np.abs(np.fft.rfft(audio[:44100] if len(audio) >= 44100 else audio))
    assert abs(np.argmax(spectrum) * 44100 / len(audio[:44100]) - 1000) < 5


def test_mono_is_channel_mean(tmp_path):
    x = tone(440.0, 0.5)
    soundfile.write(tmp_path / "s.wav", np.stack([x, np.zeros_like(x)], 1), 44100, subtype="FLOAT")
    np.testing.assert_allclose(load(tmp_path / "s.wav"), x / 2, atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"not audio at all" * 10, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_bad_files_give_audio_error(tmp_path, content):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match="bad.wav"):
        load(p)


def test_truncated_file(tmp_path):
    p = tmp_path / "t.wav"
    soundfile.write(p, tone(440.0, 1.0), 44100)
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(AudioError):
        load(p)


def test_missing_and_find(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load(tmp_path / "nope.wav")
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/b.wav", "d/e/a.flac", "d/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_audio([tmp_path / "d"])] == ["b.wav", "a.flac"]
    with pytest.raises(AudioError):
        find_audio([tmp_path / "missing"])
