"""``instrumentd interpolate START TUNED --alpha A --out NEW``: a checkpoint on the straight line between
two checkpoints' weights (WiSE-FT), e.g. a network and its fine-tuning on real recordings."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Write NEW = (1 - A) x START + A x TUNED, weight by weight, for two checkpoints of the same network "
    "(variant, classes, features), typically TUNED = 'instrumentd train BANK --init START'. Such a blend "
    "often holds up on real recordings better than either end. NEW keeps TUNED's training metadata and "
    "records both ends and A; it has no no-instrument thresholds, so choose them next with "
    "'instrumentd calibrate NEW STEM_BANK --out NEW'."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("interpolate", help="blend two checkpoints of one network in weight space (WiSE-FT)",
                              description=DESCRIPTION)
    p.add_argument("start", metavar="START", help="checkpoint the fine-tuning started from (.safetensors)")
    p.add_argument("tuned", metavar="TUNED", help="the fine-tuned checkpoint (.safetensors)")
    p.add_argument("--alpha", type=float, required=True, metavar="A",
                   help="TUNED's share, 0-1 (0 writes START's weights, 1 TUNED's)")
    p.add_argument("--out", required=True, metavar="NEW", help="checkpoint to write (.safetensors)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from instrumentd.model import checkpoint
    from instrumentd.pipeline.config import FeatureConfig
    from instrumentd.pipeline.errors import EXIT_OK
    from instrumentd.training.interpolate import interpolate_checkpoints

    model, meta = interpolate_checkpoints(args.start, args.tuned, args.alpha)
    extra = {k: v for k, v in meta.items() if k not in ("format", "variant", "classes", "features", "trained",
                                                         "weights_sha256")}
    written = checkpoint.save(args.out, model, meta["variant"], FeatureConfig.from_dict(meta["features"]),
                              tuple(meta["classes"]), meta["trained"], **extra)
    print(f"{checkpoint.checkpoint_id(written)}: {1 - args.alpha:g} x {meta['interpolation']['start']} + "
          f"{args.alpha:g} x {meta['interpolation']['tuned']}")
    print(f"checkpoint: {args.out} (no no-instrument thresholds yet: instrumentd calibrate {args.out} STEM_BANK "
          f"--out {args.out})")
    return EXIT_OK
