import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from instrumentd.pipeline.audio import BOUNDED_SUBTYPES, find_audio, load_audio, mono_block, sanitize
from instrumentd.pipeline.errors import AudioError

from ..conftest import tone


@pytest.mark.parametrize("fmt,ext", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg"), ("MP3", ".mp3")])
def test_formats_rates_and_channels(tmp_path, fmt, ext):
    sr = 48000
    x = tone(1000.0, 1.0, sr)
    stereo = np.stack([x, x], axis=1)
    path = tmp_path / f"a{ext}"
    soundfile.write(path, stereo, sr, format=fmt)
    audio = load_audio(path)
    assert audio.dtype == np.float32
    assert abs(len(audio) - 44100) <= 1200  # mp3 adds encoder delay and padding
    spectrum = np.abs(np.fft.rfft(audio[:44100] if len(audio) >= 44100 else audio))
    assert abs(np.argmax(spectrum) * 44100 / len(audio[:44100]) - 1000) < 5


def test_mono_is_channel_mean(tmp_path):
    x = tone(440.0, 0.5)
    soundfile.write(tmp_path / "s.wav", np.stack([x, np.zeros_like(x)], 1), 44100, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), x / 2, atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"not audio at all" * 10, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_bad_files_give_audio_error(tmp_path, content):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(p)


def test_truncated_file(tmp_path):
    p = tmp_path / "t.wav"
    soundfile.write(p, tone(440.0, 1.0), 44100)
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(AudioError):
        load_audio(p)


def test_missing_and_find(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/b.wav", "d/e/a.flac", "d/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_audio([tmp_path / "d"])] == ["b.wav", "a.flac"]
    with pytest.raises(AudioError):
        find_audio([tmp_path / "missing"])


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True, timeout=60)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize("name, codec", [("a.m4a", ["-c:a", "aac"]), ("a.aac", ["-c:a", "aac"]),
                                          ("a.opus", ["-c:a", "libopus"]), ("a.mp4", ["-c:v", "mpeg4", "-c:a", "aac"])])
def test_what_soundfile_cannot_read_ffmpeg_decodes(tmp_path, name, codec):
    """The 1 kHz tone at 44.1 kHz from each; soundfile reads only the .opus (libsndfile >= 1.0.29), ffmpeg the
    others (the .mp4 also holds a video track)."""
    src = tmp_path / "tone.wav"
    soundfile.write(src, np.stack([tone(1000.0, 1.0, 48000)] * 2, axis=1), 48000)
    video = ["-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=10"] if name.endswith(".mp4") else []
    _ffmpeg("-i", str(src), *video, *codec, "-shortest", str(tmp_path / name))
    if not name.endswith(".opus"):
        with pytest.raises(soundfile.LibsndfileError):
            soundfile.info(tmp_path / name)
    audio = load_audio(tmp_path / name)
    assert audio.dtype == np.float32 and abs(len(audio) - 44100) <= 3000  # encoder delay and padding
    spectrum = np.abs(np.fft.rfft(audio[:32768]))
    assert abs(np.argmax(spectrum) * 44100 / 32768 - 1000) < 5


def test_a_file_neither_decoder_reads_is_one_line_naming_both(tmp_path):
    p = tmp_path / "noise.m4a"
    p.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(AudioError) as err:
        load_audio(p)
    message = str(err.value)
    assert "noise.m4a" in message and "soundfile:" in message and "ffmpeg:" in message and "\n" not in message


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sanitize_zeroes_nan_and_infinities_clips_the_rest_and_leaves_its_input_alone(dtype):
    bad = np.array([np.nan, np.inf, -np.inf, 2.0, -3.0, 0.5], dtype)
    fine = np.array([2.0, -3.0, 0.5], dtype)
    cases = [(bad, [0, 0, 0, 1, -1, 0.5]), (fine, [1, -1, 0.5])]
    if dtype == np.float64:
        cases.append((np.array([1e308, 1e308, -0.25]), [1, 1, -0.25]))  # finite samples whose sum is not
    for audio, want in cases:
        before = audio.copy()
        np.testing.assert_array_equal(sanitize(audio), np.array(want, dtype))
        np.testing.assert_array_equal(audio, before)


@pytest.mark.parametrize("subtype", sorted(BOUNDED_SUBTYPES))
def test_integer_pcm_decodes_within_full_scale_so_its_blocks_skip_the_check(tmp_path, subtype):
    """What BOUNDED_SUBTYPES promises: libsndfile hands these encodings over as finite floats in [-1, 1],
    so mono_block may pass them through unchecked; a float block is still cleaned."""
    path = tmp_path / ("edge.aiff" if subtype == "PCM_S8" else "edge.wav")  # WAV's 8 bits are unsigned
    soundfile.write(path, np.array([[1.0, -1.0], [-1.0, 0.999], [0.5, -0.25]]), 8000, subtype=subtype)
    block = soundfile.read(path, dtype="float32", always_2d=True)[0]
    assert np.isfinite(block).all() and np.abs(block).max() <= 1.0
    np.testing.assert_array_equal(mono_block(block, bounded=True), block.mean(axis=1))
    np.testing.assert_array_equal(mono_block(block[:, :1], bounded=True), block[:, 0])
    wild = np.array([[np.nan], [2.0], [-0.5]], np.float32)
    np.testing.assert_array_equal(mono_block(wild), [0.0, 1.0, -0.5])
