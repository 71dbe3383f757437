"""A bounded fuzz run over audio decoding: mutated WAV and FLAC bytes into ``pipeline.audio.load_audio``.

Every mutant either decodes to finite float32 mono samples in [-1, 1] at 44.1 kHz or raises
AudioError; no other exception may escape. The run is seeded (the same mutants every time) and
``INSTRUMENTD_FUZZ_CASES`` sets how many per seed file (default 150). Most of a case's time is an
ffmpeg child starting (the fallback for a file soundfile refuses), so the mutants, made in order,
are decoded :data:`DECODERS` at a time, each from a file of its own.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.errors import AudioError

from .conftest import wav_bytes

CASES = int(os.environ.get("INSTRUMENTD_FUZZ_CASES", "150"))
DECODERS = 2  # mutants decoded at once, each case mostly an ffmpeg child starting: one on each core of a 2-core machine
SEEDS = {
    "wav16": lambda: wav_bytes(0.3, 22050, 2, "WAV", "PCM_16"),
    "wav_float": lambda: wav_bytes(0.3, 48000, 1, "WAV", "FLOAT"),
    "flac": lambda: wav_bytes(0.3, 44100, 1, "FLAC", "PCM_16"),
    "flac24_6ch": lambda: wav_bytes(0.2, 96000, 6, "FLAC", "PCM_24"),
}


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutation of ``data``, favouring the header (where decoders trust what they read)."""
    b = bytearray(data)
    kind = rng.choice(["flip", "bytes", "header_int", "truncate", "insert", "delete", "splice"])
    head = min(len(b), 96)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(head) if rng.random() < 0.7 else rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == "header_int":  # a length, rate or channel count set to an extreme
        i = rng.randrange(0, head - 4)
        b[i : i + 4] = rng.choice([0, 1, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000]).to_bytes(4, "little")
    elif kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind == "insert":
        i = rng.randrange(len(b))
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    elif kind == "delete":
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 64)]
    else:  # the header of one format on the body of another
        other = SEEDS[rng.choice(sorted(SEEDS))]()
        b = bytearray(other[: rng.randint(4, 64)]) + b[rng.randint(4, 64) :]
    return kind, bytes(b)


def decode(path: Path, data: bytes) -> str:
    """Write one mutant to ``path`` and load it: ``decoded`` (float32 mono, every sample finite and in
    [-1, 1]), ``AudioError`` (one line naming the file), or what else happened, which fails the test."""
    path.write_bytes(data)
    try:
        audio = load_audio(path)
    except AudioError as exc:
        if str(path) in str(exc) and "\n" not in str(exc):
            return "AudioError"
        return f"an AudioError that is not one line naming the file: {exc!r}"
    except Exception as exc:  # the property under test: nothing else escapes
        return f"{type(exc).__name__}: {exc}"
    finally:
        path.unlink()
    if audio.dtype != np.float32 or audio.ndim != 1:
        return f"decoded to {audio.dtype} {audio.shape}"
    # min and max are NaN when any sample is, and infinite when one is: finite and within [-1, 1] in two
    # passes, with no temporaries (a header claiming 4 hz resamples 0.3 s to 146 million samples)
    if audio.size and not (-1 <= audio.min() and audio.max() <= 1):
        return f"samples not finite or beyond [-1, 1]: {audio.min()} .. {audio.max()}"
    return "decoded"


@pytest.mark.slow
@pytest.mark.parametrize("seed_name", sorted(SEEDS))
def test_mutated_audio_decodes_or_raises_audio_error(seed_name, tmp_path):
    seed = SEEDS[seed_name]()
    rng = random.Random(f"instrumentd-{seed_name}")
    mutants = [mutate(seed, rng) for _ in range(CASES)]
    suffix = "flac" if "flac" in seed_name else "wav"
    paths = [tmp_path / f"mutant-{case}.{suffix}" for case in range(CASES)]
    with ThreadPoolExecutor(DECODERS) as pool:
        results = list(pool.map(decode, paths, [data for _, data in mutants]))
    for case, ((kind, _), result) in enumerate(zip(mutants, results)):
        if result not in ("decoded", "AudioError"):
            pytest.fail(f"case {case} ({kind}) of {seed_name}: {result}")
    outcomes = Counter(results)
    print(f"{seed_name}: {CASES} mutants, {dict(outcomes)}")
    assert sum(outcomes.values()) == CASES


def test_a_flac_header_that_claims_billions_of_samples_is_refused_or_read_for_what_it_holds(tmp_path):
    data = bytearray(SEEDS["flac"]())
    # STREAMINFO: bytes 18-25 hold rate (20 bits), channels (3), bits (5) and the total sample count (36)
    fields = int.from_bytes(data[18:26], "big") | (2**36 - 1)
    data[18:26] = fields.to_bytes(8, "big")
    path = tmp_path / "liar.flac"
    path.write_bytes(bytes(data))
    # soundfile refuses the header; the ffmpeg fallback decodes the frames actually there, never billions
    try:
        audio = load_audio(path)
    except AudioError as exc:
        assert "liar.flac" in str(exc)
    else:
        assert len(audio) < 60 * 44100 and np.isfinite(audio).all()
