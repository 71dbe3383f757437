"""A bounded fuzz run over audio decoding: mutated WAV and FLAC bytes into ``pipeline.audio.load_audio``.

Every mutant either decodes to finite float32 mono samples in [-1, 1] at 44.1 kHz or raises
AudioError; no other exception may escape. The run is seeded (the same mutants every time) and
``INSTRUMENTD_FUZZ_CASES`` sets how many per seed file (default 300).
"""

from __future__ import annotations

import os
import random
from collections import Counter

import numpy as np
import pytest

from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.errors import AudioError

from .conftest import wav_bytes

CASES = int(os.environ.get("INSTRUMENTD_FUZZ_CASES", "150"))
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


@pytest.mark.slow
@pytest.mark.parametrize("seed_name", sorted(SEEDS))
def test_mutated_audio_decodes_or_raises_audio_error(seed_name, tmp_path):
    seed = SEEDS[seed_name]()
    rng = random.Random(f"instrumentd-{seed_name}")
    outcomes: Counter[str] = Counter()
    path = tmp_path / f"mutant.{'flac' if 'flac' in seed_name else 'wav'}"
    for case in range(CASES):
        kind, data = mutate(seed, rng)
        path.write_bytes(data)
        try:
            audio = load_audio(path)
        except AudioError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            outcomes["AudioError"] += 1
            continue
        except Exception as exc:  # the property under test: nothing else escapes
            pytest.fail(f"case {case} ({kind}) of {seed_name}: {type(exc).__name__}: {exc}")
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert np.all(np.isfinite(audio)) and np.all(np.abs(audio) <= 1)
        outcomes["decoded"] += 1
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
