"""The fused Triton kernels: Viterbi decodes exactly what the torch steps decode, the observation
kernel scores troughs as the torch steps do (CUDA only)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from instrumentd.pipeline import pyin_kernels
from instrumentd.pipeline.config import DEFAULT, TEN_MS
from instrumentd.pipeline.pyin import (
    batch_observations, cmndf, frame, log_observations, normalise, observations, padded_scores, parabolic_shifts,
    viterbi, viterbi_step,
)
from instrumentd.pipeline.pyin_model import LOG_TINY, pyin_model
from instrumentd.pipeline.pyin_stream import StreamingPyin

from ..conftest import SR

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not pyin_kernels.AVAILABLE, reason="Triton is not installed"),
]


def model_for(cfg):
    return pyin_model(cfg.sample_rate, cfg.pitch_fmin, cfg.pitch_fmax, cfg.pitch_frame_length, cfg.hop_length)


def varied_audio() -> np.ndarray:
    """float32 [items, samples], 2 s each: harmonic notes across the pitch range with gaps, a
    vibrato, a chord, white noise and silence (no fluidsynth needed, so GPU machines run it)."""
    n = 2 * SR
    t = np.arange(n) / SR
    rng = np.random.default_rng(3)
    items = []
    for low in (70.0, 180.0, 450.0, 1100.0):
        f0 = low * 2 ** (rng.integers(0, 12, size=8) / 12)[np.minimum((t * 4).astype(int), 7)]
        phase = 2 * np.pi * np.cumsum(f0) / SR
        gate = (t * 4) % 1 < 0.8
        items.append(gate * sum(0.3 / k * np.sin(k * phase) for k in range(1, 6)))
    items.append(0.4 * np.sin(2 * np.pi * np.cumsum(330 + 15 * np.sin(2 * np.pi * 5 * t)) / SR))
    items.append(sum(0.2 * np.sin(2 * np.pi * f * t) for f in (196.0, 246.9, 293.7)))
    items.append(0.1 * rng.standard_normal(n))
    items.append(np.zeros(n))
    return np.stack(items).astype(np.float32)


@pytest.mark.parametrize("cfg, thresholds", [(DEFAULT, 100), (TEN_MS, 100), (DEFAULT, 40)],
                         ids=["hop1323", "hop441", "40-thresholds"])
def test_observation_kernel_scores_frames_as_the_torch_steps(cfg, thresholds):
    model = pyin_model(cfg.sample_rate, cfg.pitch_fmin, cfg.pitch_fmax, cfg.pitch_frame_length, cfg.hop_length,
                       thresholds)
    audio = torch.from_numpy(varied_audio()).cuda()
    frames = frame(audio, model).reshape(-1, model.frame_length)
    yin = cmndf(frames, model)
    ref_voiced, ref_prob = observations(yin, parabolic_shifts(yin), model)
    voiced, prob = pyin_kernels.observe(frames, model)
    scored, ref_scored = voiced > LOG_TINY, ref_voiced > LOG_TINY
    assert ref_scored.sum() > 1000 and (ref_prob > 0.5).any() and (ref_prob == 0).any()
    # the kernel sums YIN's running means in another order and uses the fast log2: a trough on a
    # bin's edge, or two lags within rounding of each other, may score differently (at most 1 in 10^3)
    assert (scored != ref_scored).sum() <= max(1, ref_scored.sum() // 1000)
    both = scored & ref_scored
    close = torch.isclose(voiced[both], ref_voiced[both], rtol=1e-4, atol=1e-4)
    assert close.float().mean() >= 0.999
    assert ((prob - ref_prob).abs() < 1e-4).float().mean() >= 0.999
    assert torch.equal(voiced[~scored], torch.full_like(voiced[~scored], LOG_TINY))


@pytest.mark.parametrize("cfg, items", [(DEFAULT, 8), (TEN_MS, 8), (DEFAULT, pyin_kernels.LARGE_FROM + 3)],
                         ids=["hop1323", "hop441", "large-layout"])
def test_forward_kernel_equals_torch_steps(cfg, items):
    """In either layout (:func:`~instrumentd.pipeline.pyin_kernels.forward_layout`), with a last
    program only partly filled."""
    model = model_for(cfg)
    audio = torch.from_numpy(varied_audio()).cuda()
    log_obs = log_observations(*batch_observations(frame(audio, model), model), model)
    copies = -(-items // len(log_obs))
    noise = torch.rand(copies, *log_obs.shape, generator=torch.Generator().manual_seed(1)).cuda()
    noise[0] = 0  # the audio's own scores first, then copies each with scores of their own
    log_obs = (log_obs + noise).flatten(0, 1)[:items]
    layout = pyin_kernels.LARGE_LAYOUT if items > 8 else pyin_kernels.SMALL_LAYOUT
    assert pyin_kernels.forward_layout(items) == layout
    batch, n_frames = log_obs.shape[:2]
    ours = padded_scores(n_frames, batch, model=model, device=audio.device, dtype=torch.float32)
    normalise(log_obs[:, 0], ours[0], model)
    reference = ours.clone()
    pyin_kernels.forward(ours.transpose(0, 1), log_obs[:, 1:], 1, None, model)
    for i in range(1, n_frames):
        normalise(viterbi_step(reference[i - 1], log_obs[:, i], model), reference[i], model)
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("cfg", [DEFAULT, TEN_MS], ids=["hop1323", "hop441"])
def test_fused_viterbi_equals_cpu_viterbi(cfg):
    model = model_for(cfg)
    audio = torch.from_numpy(varied_audio())
    log_obs = log_observations(*batch_observations(frame(audio, model), model), model)
    on_cpu = viterbi(log_obs, model)  # torch steps and the numpy backtrack
    on_gpu = viterbi(log_obs.cuda(), model).cpu()
    assert torch.equal(on_gpu, on_cpu)


def streamed_f0(sp: StreamingPyin, audio: np.ndarray, sizes) -> np.ndarray:
    """f0 of every item of ``audio [items, samples]`` pushed to a fresh ``sp`` together in chunks of
    ``sizes``, then flushed: the items' frames one after the other."""
    slots = [sp.add_stream() for _ in audio]
    got = {s: [] for s in slots}
    start = 0
    for size in sizes:
        for s, f0 in sp.push({s: audio[i, start : start + size] for i, s in enumerate(slots)}).items():
            got[s].append(f0)
        start += size
    return np.concatenate([np.concatenate([*got[s], sp.flush(s)]) for s in slots])


def test_streaming_on_cuda_equals_streaming_on_cpu():
    audio = varied_audio()
    sizes = np.random.default_rng(5).integers(1, 9000, size=40)
    out = {device: streamed_f0(StreamingPyin(DEFAULT, lag=20, device=device), audio, sizes)
           for device in ("cpu", "cuda")}
    same = (out["cpu"] == out["cuda"]) | (np.isnan(out["cpu"]) & np.isnan(out["cuda"]))
    assert same.mean() >= 0.999


def test_kernels_compile_once_whatever_the_counts():
    """A daemon's pushes bring any number of frames per stream: a new count, stride or view offset must
    not compile a kernel again (each compile stalls the worker for about a second)."""
    model = model_for(DEFAULT)
    audio = varied_audio()
    frames = frame(torch.from_numpy(audio).cuda(), model).reshape(-1, model.frame_length)
    pyin_kernels.observe(frames[:7], model)
    sp = StreamingPyin(DEFAULT, lag=20, device="cuda")
    slots = [sp.add_stream() for _ in range(3)]
    start = SR  # a second each: past the lag, so every kernel has run
    sp.push({s: audio[s, :start] for s in slots})
    kernels = pyin_kernels.KERNELS

    def compiled() -> list[int]:  # Triton's compiled variants per kernel on this device
        return [len(k.device_caches[torch.cuda.current_device()][0]) for k in kernels]

    before = compiled()
    assert all(n >= 1 for n in before)
    for n in [1, 2, 3, 4, 5, 8, 13, 16, 17]:
        pyin_kernels.observe(frames[n : 2 * n + 1], model)
        sp.push({s: audio[s, start : start + 500 * n] for s in slots[: 1 + n % 3]})
        start += 500 * n
    assert compiled() == before


def test_streaming_engine_compiles_each_forward_layout_before_its_first_push():
    """The start-up burst pushes hundreds of streams at once, later steps a few: neither may stall on a
    compile. In a fresh process, where no other test has compiled the kernel yet."""
    script = f"""
import torch
from instrumentd.pipeline import pyin_kernels
from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.pyin import normalise, padded_scores
from instrumentd.pipeline.pyin_stream import StreamingPyin
model = StreamingPyin(DEFAULT, lag=20, device="cuda").model
cache = pyin_kernels.KERNELS[1].device_caches[torch.cuda.current_device()][0]
before = len(cache)
for items in (3, {pyin_kernels.LARGE_FROM + 1}):
    scores = padded_scores(items, 3, model=model, device=torch.device("cuda"), dtype=torch.float32)
    normalise(torch.zeros(items, 2, model.n_bins, device="cuda"), scores[:, 0], model)
    pyin_kernels.forward(scores, torch.zeros(items, 2, 2, model.n_bins, device="cuda"), 1, None, model)
    assert torch.isfinite(scores[:, 1:, :, model.width // 2 : model.width // 2 + model.n_bins]).all()
print(before, len(cache))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert before == 2 and after == 2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_kernels_run_on_their_tensors_gpu_whichever_is_current():
    """With cuda:0 current, the kernels on cuda:1 tensors (Triton checks every pointer against the current
    device) decode what the torch steps on the CPU decode, and stream what cuda:0 streams."""
    model = model_for(DEFAULT)
    audio = varied_audio()
    log_obs = log_observations(*batch_observations(frame(torch.from_numpy(audio), model), model), model)
    streamed = {}
    with torch.cuda.device(0):
        assert torch.equal(viterbi(log_obs.to("cuda:1"), model).cpu(), viterbi(log_obs, model))
        for device in ("cuda:0", "cuda:1"):
            sp = StreamingPyin(DEFAULT, lag=20, device=device)
            slots = [sp.add_stream() for _ in audio]
            got = [sp.push({s: audio[s, start : start + 4410] for s in slots})
                   for start in range(0, audio.shape[1], 4410)]
            none = np.zeros(0, np.float32)
            streamed[device] = np.concatenate([np.concatenate([*(g.get(s, none) for g in got), sp.flush(s)])
                                               for s in slots])
        assert torch.cuda.current_device() == 0
    a, b = streamed["cuda:0"], streamed["cuda:1"]
    assert ((a == b) | (np.isnan(a) & np.isnan(b))).all()
