"""Flags several benchmarks share: the counts a run tries (``--sources``, ``--streams``) and the seconds it measures."""

from __future__ import annotations

from instrumentd.pipeline.errors import ParameterError


def parse_counts(text: str | None, default: tuple[int, ...], flag: str) -> list[int]:
    """``"8,16,32"`` -> ``[8, 16, 32]``; ``default`` when ``text`` is empty; ParameterError naming ``flag``
    for anything but a comma list of positive counts."""
    if not text:
        return list(default)
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ParameterError(f"{flag} {text!r}: give a comma list of positive counts such as 8,16,32")
    return counts


def measured_seconds(seconds: float | None, quick: bool, default: float) -> float:
    """``--seconds``, else 10 s with ``--quick``, else ``default``; ParameterError unless positive."""
    seconds = seconds or (10.0 if quick else default)
    if not seconds > 0:
        raise ParameterError(f"--seconds must be positive, got {seconds}")
    return float(seconds)
