"""Broadcast codecs for stems: a stem encoded with MP3, AAC or Opus at a broadcast bitrate and decoded
again (ffmpeg), so that a bank carries the band limits, pre-echo and quantisation noise of what radio
streams and podcasts send, beside the Vorbis its files are stored in.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.errors import ParameterError

from .render import RenderError

# codec name -> (ffmpeg encoder, container suffix)
CODECS = {"mp3": ("libmp3lame", ".mp3"), "aac": ("aac", ".m4a"), "opus": ("libopus", ".opus")}
BITRATES_KBPS = (48, 64, 96, 128)  # mono streams of talk and music radio, podcasts


def parse_codec(text: str) -> tuple[str, int]:
    """``"mp3:64"`` -> ``("mp3", 64)``: a codec of :data:`CODECS` and a bitrate in kbit/s."""
    name, _, kbps = text.partition(":")
    if name not in CODECS or not kbps.isdigit() or int(kbps) <= 0:
        raise ParameterError(f"bad codec {text!r}: CODEC:KBPS with CODEC one of {', '.join(CODECS)}")
    return name, int(kbps)


def round_trip(audio: np.ndarray, sr: int, codec: str) -> np.ndarray:
    """``audio: float32 [n]`` at ``sr`` hz through ``codec`` (``"mp3:64"``...) and back: ``float32 [n]``,
    cut or padded to ``n`` (encoders add a few ms of delay and padding), clipped to [-1, 1].

    Raises
    ------
    RenderError
        ffmpeg is missing or cannot encode (its last error line).
    """
    name, kbps = parse_codec(codec)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RenderError("ffmpeg is not installed (needed for codec stems)")
    encoder, suffix = CODECS[name]
    with tempfile.TemporaryDirectory(prefix="instrumentd-codec-") as tmp:
        coded = Path(tmp) / f"stem{suffix}"
        done = subprocess.run(
            [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1",
             "-i", "pipe:0", "-c:a", encoder, "-b:a", f"{kbps}k", str(coded)],
            input=np.ascontiguousarray(audio, dtype="<f4").tobytes(), capture_output=True)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise RenderError(f"ffmpeg cannot encode {codec}: {lines[-1] if lines else done.returncode}")
        back = load_audio(coded, sr)
    out = np.zeros(len(audio), np.float32)
    out[: min(len(audio), len(back))] = back[: len(audio)]
    return np.clip(out, -1.0, 1.0)
