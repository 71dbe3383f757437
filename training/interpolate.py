"""Weight-space interpolation of two checkpoints of one network (WiSE-FT, Wortsman et al. 2022).

A network fine-tuned on new data (here: real instruments' recordings in the stem bank) and the
network it started from lie in one basin of the loss; the straight line between their weights
often generalises to a shifted distribution (real recordings) better than either end. ``alpha``
is the fine-tuned end's share: 0 gives ``start``, 1 gives ``tuned``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from instrumentd.model.checkpoint import CheckpointError, checkpoint_id, load_checkpoint
from instrumentd.pipeline.errors import ParameterError


def interpolate_checkpoints(start: str | Path, tuned: str | Path,
                            alpha: float) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(1 - alpha) * start + alpha * tuned``, every floating tensor (BatchNorm statistics too); integer
    buffers (BatchNorm's batch counts) are ``tuned``'s.

    Returns the model (eval mode, CPU) and the metadata to save it with: ``tuned``'s, without its
    decision (thresholds chosen for other weights; choose them again with ``instrumentd calibrate``),
    plus ``interpolation`` = both ends' ids and ``alpha``.

    Raises ParameterError for ``alpha`` outside [0, 1], CheckpointError when the two are not the same
    network (variant, classes, features).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"alpha must be in [0, 1] (the tuned checkpoint's share), got {alpha}")
    model_a, meta_a = load_checkpoint(start, expect_classes=None)
    model_b, meta_b = load_checkpoint(tuned, expect_classes=None)
    for key in ("variant", "classes", "features"):
        if meta_a[key] != meta_b[key]:
            raise CheckpointError(f"{start} and {tuned} are different networks: {key} {meta_a[key]!r} "
                                  f"against {meta_b[key]!r}")
    a, b = model_a.state_dict(), model_b.state_dict()
    mixed = {k: torch.lerp(a[k], b[k], alpha) if b[k].is_floating_point() else b[k] for k in b}
    model_b.load_state_dict(mixed)
    meta = {k: v for k, v in meta_b.items() if k != "decision"}
    meta["interpolation"] = {"start": checkpoint_id(meta_a), "tuned": checkpoint_id(meta_b), "alpha": alpha}
    return model_b.eval(), meta
