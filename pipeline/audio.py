"""Decoding and resampling: any file soundfile or ffmpeg reads, any rate and channel count, to float32 mono at 44.1 kHz.

soundfile (libsndfile) decodes WAV, FLAC, Ogg, MP3 and AIFF in-process; anything else ffmpeg decodes
(``.m4a``, ``.aac``, ``.opus``, a video file's audio track) goes through an ffmpeg child that writes
mono float32 at the wanted rate to a pipe.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .config import SAMPLE_RATE
from .errors import AudioError

READ_BLOCK = 1 << 20  # frames per decoder call: 4 MiB of float32 per channel
# encodings libsndfile decodes to floats within [-1, 1) (integers over full scale): finite and in range as they
# come, so a stream of them needs no check for NaN and no clipping (a sixth of a paced file's cost)
BOUNDED_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"})
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif",  # soundfile
                    ".m4a", ".aac", ".opus", ".wma", ".mp4", ".m4v", ".mkv", ".webm", ".mov")  # ffmpeg


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``audio: [samples]`` or ``[samples, channels]`` -> ``[samples]``, the mean of the channels."""
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise AudioError(f"audio must be [samples] or [samples, channels], got shape {audio.shape}")
    return audio.mean(axis=1)


def mono_block(block: np.ndarray, bounded: bool = False) -> np.ndarray:
    """A decoder's ``[frames, channels]`` -> ``float32 [frames]`` in [-1, 1]: NaN and infinities become 0,
    the rest is clipped, so no source can feed the features a value whose square overflows. ``bounded``:
    the samples are known to be finite and within [-1, 1] (:data:`BOUNDED_SUBTYPES`) and are not checked;
    a mono block's samples are then returned as a view."""
    if block.shape[1] == 1:
        mono = np.asarray(block[:, 0], dtype=np.float32)
        return mono if bounded else sanitize(mono)
    mixed = np.asarray(block, dtype=np.float32)
    return np.ascontiguousarray((mixed if bounded else sanitize(mixed)).mean(axis=1), dtype=np.float32)


def resample(audio: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample ``audio: [samples]`` from ``sr_in`` to ``sr_out`` hz with soxr (high quality)."""
    if sr_in <= 0:
        raise AudioError(f"sample rate must be positive, got {sr_in}")
    if sr_in == sr_out:
        return audio
    return soxr.resample(audio, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def sanitize(audio: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Replace NaN and +-Inf with 0 and clip to [-1, 1]: decoders and PCM sources can produce both.
    ``in_place``: ``audio`` is the caller's own (a fresh decode) and is overwritten instead of copied."""
    with np.errstate(over="ignore", invalid="ignore"):  # a sum that overflows only means the long way
        finite = np.isfinite(audio.sum())
    if finite:  # one pass: the usual case, nothing to replace
        return np.clip(audio, -1.0, 1.0, out=audio if in_place else None)
    audio = np.nan_to_num(audio, copy=not in_place, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(audio, -1.0, 1.0, out=audio)


def pcm_to_float(raw: np.ndarray) -> np.ndarray:
    """Integer or float PCM ``[frames, channels]`` -> float32 in [-1, 1]; float NaN and infinities become 0,
    other values beyond full scale are clipped before the cast (a float64 past float32's range is not infinite)."""
    if raw.dtype == np.uint8:
        return (raw.astype(np.float32) - 128.0) / 128.0
    if raw.dtype.kind == "i":
        return raw.astype(np.float32) / float(2 ** (8 * raw.dtype.itemsize - 1))
    if raw.dtype.itemsize == 4:  # float32 already: checked as it is, without a float64 copy
        return sanitize(raw.astype(np.float32, copy=False))
    return sanitize(raw.astype(np.float64)).astype(np.float32)


class PcmReader:
    """Raw interleaved PCM bytes -> mono ``float32`` in [-1, 1], whatever the chunking.

    ``push(data)`` returns the samples of every whole frame received so far and keeps the bytes of
    an incomplete frame for the next push, so any split of a byte string gives the same samples.
    ``dtype`` is a numpy dtype (``<i2``, ``<f4``...), ``channels`` the interleaved channel count.
    Used for standard input and for the pipes of child sources (ffmpeg's float32), a read at a time.
    """

    def __init__(self, dtype: str, channels: int):
        self.dtype = np.dtype(dtype)
        self.channels = channels
        self.frame_bytes = self.dtype.itemsize * channels
        self._pending = b""

    def push(self, data: bytes) -> np.ndarray:
        """``data``: any number of bytes -> ``float32 [frames]``, one sample per whole frame."""
        pending = self._pending + data if self._pending else data
        frames = len(pending) // self.frame_bytes
        self._pending = pending[frames * self.frame_bytes :]
        raw = np.frombuffer(pending, dtype=self.dtype, count=frames * self.channels).reshape(-1, self.channels)
        return mono_block(pcm_to_float(raw), bounded=True)  # pcm_to_float bounds them

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (dropped if the input ends here)."""
        return len(self._pending)


def _read_blocks(path: Path) -> tuple[np.ndarray, int]:
    """Decode ``float32 [samples, channels]`` block by block until the decoder runs dry.

    The header's frame count is not trusted: a corrupt one can claim billions of samples, and
    reading it in one call would allocate them all.
    """
    with soundfile.SoundFile(str(path)) as f:
        blocks = []
        while True:
            block = f.read(READ_BLOCK, dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            blocks.append(block)
        channels = f.channels
        return (np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)), f.samplerate


def _ffmpeg_decode(path: Path, sr: int) -> np.ndarray:
    """Decode the first audio stream of ``path`` with an ffmpeg child -> ``float32 [samples]`` mono at ``sr`` hz.

    Raises
    ------
    AudioError
        Naming ffmpeg's own last error line, or saying that ffmpeg is not installed.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError("ffmpeg is not installed")
    # "file:" keeps a name with a colon from being read as a protocol
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", f"file:{path}", "-vn", "-ac", "1",
           "-ar", str(sr), "-f", "f32le", "pipe:1"]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(lines[-1] if lines else f"ffmpeg exited with code {done.returncode}")
    return np.frombuffer(done.stdout[: len(done.stdout) // 4 * 4], dtype="<f4").astype(np.float32)


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as ``float32 [samples]``, mono, at ``sr`` hz.

    soundfile first; a file it cannot read goes to ffmpeg (:func:`_ffmpeg_decode`).

    Raises
    ------
    AudioError
        If the file is missing, empty, or neither soundfile nor ffmpeg can decode it (one line, both reasons).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        audio, file_sr = _read_blocks(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, MemoryError) as exc:
        try:
            mono = _ffmpeg_decode(path, sr)
        except AudioError as ffmpeg_exc:
            raise AudioError(f"{path}: cannot decode audio (soundfile: {exc}; ffmpeg: {ffmpeg_exc})") from None
        if mono.shape[0] == 0:
            raise AudioError(f"{path}: file holds no audio samples")
        return sanitize(mono, in_place=True)
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: file holds no audio samples")
    mono = to_mono(audio).astype(np.float32, copy=False)  # a new array: the mean of the channels
    return sanitize(resample(mono, file_sr, sr), in_place=True)


def find_audio(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders (searched recursively, sorted) into the audio files they hold."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS))
        elif p.exists():
            found.append(p)
        else:
            raise AudioError(f"{p}: no such file or folder")
    return found
