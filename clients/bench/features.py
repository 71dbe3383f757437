"""``instrumentd bench features``: mel + pitch mask for a batch of 3 s windows on the device, against librosa.

The decoded audio (the bundled demo clip, cut into overlapping 3 s windows) goes to the device
once; the mel spectrogram, the pYIN pitch track and the mask are then made there for the whole
batch. The torch pYIN engine (``"torch"`` in :data:`~instrumentd.pipeline.pitch.ENGINES`) is
used when it is registered; otherwise only the mel is measured and the summary says so. The
reference, ``librosa.feature.melspectrogram`` + ``librosa.power_to_db`` + ``librosa.pyin`` one
window at a time on the CPU, is measured on a few windows in the same run. Uploads are timed
twice: from pageable memory and through :class:`PinnedUploader`.
"""

from __future__ import annotations

import argparse

import librosa
import numpy as np
import torch

from instrumentd.pipeline.config import DEFAULT, FeatureConfig
from instrumentd.pipeline.demo import demo_audio
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.mask import f0_to_mask
from instrumentd.pipeline.mel import MelFrontEnd
from instrumentd.pipeline.pitch import ENGINES, librosa_pyin
from instrumentd.pipeline.timing import sync, time_call
from instrumentd.pipeline.windows import cut_windows

from . import BenchResult

__all__ = ["PinnedUploader", "demo_windows", "features", "librosa_mel"]

TARGET_MS_PER_1024 = 50.0  # one H100: mel + pitch mask for 1,024 windows of 3 s
WINDOW_HOP_SECONDS = 0.75  # overlap of the benchmark's windows, as a daemon with a 0.75 s hop cuts them


def demo_windows(n: int, cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """``n`` overlapping 3 s windows of the demo clip, repeated as needed: ``float32 [n, clip_samples]``."""
    hop = int(WINDOW_HOP_SECONDS * cfg.sample_rate)
    windows, _ = cut_windows(demo_audio((n - 1) * hop + cfg.clip_samples, cfg.sample_rate), cfg.clip_samples, hop)
    return windows


def librosa_mel(window: np.ndarray, cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """The reference mel of one window ``float32 [clip_samples]``: dB ``[n_mels, n_frames]``."""
    power = librosa.feature.melspectrogram(y=window, sr=cfg.sample_rate, n_fft=cfg.window_length,
                                           hop_length=cfg.hop_length, n_mels=cfg.n_mels)
    return librosa.power_to_db(power, ref=np.max, top_db=cfg.top_db)[:, : cfg.n_frames]


def _plan(device: torch.device, quick: bool) -> tuple[int, int, float]:
    """Windows on the device, windows for the librosa reference, seconds per timing."""
    if device.type == "cuda":
        return (256, 2, 0.3) if quick else (1024, 4, 1.0)
    return (4, 1, 0.3) if quick else (32, 2, 1.0)


def features(device: torch.device, quick: bool, args: argparse.Namespace):
    cfg = DEFAULT
    n, n_ref, min_seconds = _plan(device, quick)
    windows = demo_windows(n, cfg)
    front_end = MelFrontEnd(cfg).to(device)
    engine = ENGINES.get("torch")
    rows = []

    def row(stage: str, where: str, count: int, seconds: float) -> None:
        rows.append({"stage": stage, "where": where, "windows": count, "ms": seconds * 1e3,
                     "ms_per_1024": seconds * 1e3 * 1024 / count, "windows_per_s": count / seconds})

    uploads = {}
    if device.type == "cuda":
        uploader = PinnedUploader(device)
        uploads["pageable"] = time_call(lambda: torch.from_numpy(windows).to(device), device, min_seconds)
        uploads["pinned"] = time_call(lambda: uploader.upload(windows), device, min_seconds)
        row("upload (pageable)", str(device), n, uploads["pageable"])
        row("upload (pinned, non_blocking)", str(device), n, uploads["pinned"])
    audio = torch.from_numpy(windows).to(device)
    sync(device)

    def make_mel() -> torch.Tensor:
        return front_end(audio)

    mel_s = time_call(make_mel, device, min_seconds)
    row("mel", str(device), n, mel_s)
    if engine is not None:
        f0 = torch.as_tensor(engine(audio, cfg), device=device)

        def make_features() -> tuple[torch.Tensor, torch.Tensor]:
            mel = front_end(audio)
            return mel, f0_to_mask(torch.as_tensor(engine(audio, cfg), device=device), cfg)

        pitch_s = time_call(lambda: engine(audio, cfg), device, min_seconds)
        mask_s = time_call(lambda: f0_to_mask(f0, cfg), device, min_seconds)
        total_s = time_call(make_features, device, min_seconds)
        row("pitch (torch pYIN)", str(device), n, pitch_s)
        row("mask from f0", str(device), n, mask_s)
        row("mel + pitch mask", str(device), n, total_s)
    else:
        total_s = mel_s

    ref = windows[:n_ref]
    cpu = torch.device("cpu")
    ref_mel_s = time_call(lambda: [librosa_mel(w, cfg) for w in ref], cpu, 0.0, warmup=1)
    ref_pitch_s = time_call(lambda: [librosa_pyin(w[None], cfg) for w in ref], cpu, 0.0, warmup=0)
    ref_total_s = ref_mel_s + ref_pitch_s
    row("librosa melspectrogram + power_to_db", "cpu, 1 window at a time", n_ref, ref_mel_s)
    row("librosa pyin", "cpu, 1 window at a time", n_ref, ref_pitch_s)
    row("librosa mel + pyin", "cpu, 1 window at a time", n_ref, ref_total_s)

    per_window = total_s / n
    reference_per_window = (ref_total_s if engine is not None else ref_mel_s) / n_ref
    summary = {
        "windows": n,
        "pitch_included": engine is not None,
        "note": "mel + torch pYIN + mask" if engine is not None else
                "mel only: no torch pitch engine is registered, so the pitch mask is not measured",
        "ms_per_1024_windows": per_window * 1024 * 1e3,
        "target_ms_per_1024_windows": TARGET_MS_PER_1024,
        "mel_ms_per_1024_windows": mel_s / n * 1024 * 1e3,
        "librosa_ms_per_window": reference_per_window * 1e3,
        "librosa_windows": n_ref,
        "speedup_vs_librosa": reference_per_window / per_window,
        "mel_speedup_vs_librosa": (ref_mel_s / n_ref) / (mel_s / n),
        "upload_gb_per_s": {k: windows.nbytes / s / 1e9 for k, s in uploads.items()},
        "rows": rows,
    }
    return BenchResult(f"features for {n} windows of 3 s (mel + pitch mask)", rows, summary)


class PinnedUploader:
    """Copies host arrays to a device through a ring of reusable page-locked (pinned) buffers.

    :meth:`upload` copies the array into the next pinned buffer, enqueues a non-blocking copy to
    the device on the current CUDA stream and returns the device tensor at once, so the host
    can prepare the next batch while the copy runs. A buffer is written again only after its
    previous copy has finished (one CUDA event per buffer), so data in flight is never
    overwritten. Buffers grow to the largest array seen and are then reused.

    On a CPU device :meth:`upload` returns a plain copy.

    Parameters
    ----------
    device : where tensors go
    n_buffers : staging buffers in the ring; 2 lets one copy run while the next is filled
    """

    def __init__(self, device: torch.device | str, n_buffers: int = 2):
        if n_buffers < 1:
            raise ParameterError(f"n_buffers must be at least 1, got {n_buffers}")
        self.device = torch.device(device)
        self._buffers: list[torch.Tensor | None] = [None] * n_buffers
        self._events: list[torch.cuda.Event | None] = [None] * n_buffers
        self._next = 0

    def upload(self, array: np.ndarray) -> torch.Tensor:
        """``array: [...]`` of numbers -> ``float32`` tensor of the same shape on :attr:`device`."""
        array = np.asarray(array, dtype=np.float32)
        if self.device.type != "cuda":
            return torch.from_numpy(array.copy())
        slot = self._next
        self._next = (slot + 1) % len(self._buffers)
        event = self._events[slot]
        if event is not None:
            event.synchronize()  # the copy that last read this buffer has finished
        buffer = self._buffers[slot]
        if buffer is None or buffer.numel() < array.size:
            buffer = torch.empty(array.size, dtype=torch.float32, pin_memory=True)
            self._buffers[slot] = buffer
        staged = buffer[: array.size].view(array.shape)
        staged.numpy()[...] = array
        out = torch.empty(array.shape, dtype=torch.float32, device=self.device)
        out.copy_(staged, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self._events[slot] = event
        return out
