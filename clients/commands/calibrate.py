"""``instrumentd calibrate CKPT STEM_BANK --out NEW``: choose a checkpoint's "no instrument" thresholds
again on validation clips of a stem bank, without retraining."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .options import add_checkpoint_argument, add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="choose a checkpoint's no-instrument thresholds again on a stem bank's validation clips",
        description=(
            "Mix validation clips from the stems a training run holds out of STEM_BANK (the checkpoint's own "
            "split seed unless --seed), and choose the decision's thresholds on them as training does: the "
            "lowest top probability that keeps --keep-music of the music windows named, and the lowest share "
            "of pitched frames that keeps --keep-voiced of them (drums alone, most noise and other sounds "
            "have almost none). Writes a copy of CKPT with the new thresholds and how they were chosen in "
            "its metadata; the weights, and so the checkpoint's id, stay the same."
        ),
    )
    add_checkpoint_argument(p)
    p.add_argument("bank", metavar="STEM_BANK", help="stem bank folder (instrumentd synth-stems)")
    p.add_argument("--out", required=True, metavar="NEW", help="checkpoint to write (.safetensors)")
    p.add_argument("--validation-clips", type=int, default=1100, metavar="N",
                   help="validation clips to mix (default: 1100, as training)")
    p.add_argument("--keep-music", type=float, default=0.97, metavar="SHARE",
                   help="share of music windows the confidence threshold keeps (default: 0.97)")
    p.add_argument("--keep-voiced", type=float, default=0.99, metavar="SHARE",
                   help="share of music windows the pitched-frame threshold keeps (default: 0.99)")
    p.add_argument("--seed", type=int, default=None,
                   help="split and mixing seed (default: the checkpoint's training seed, else 0)")
    add_device_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from instrumentd.model import checkpoint
    from instrumentd.pipeline.config import FeatureConfig
    from instrumentd.pipeline.devices import resolve_device
    from instrumentd.pipeline.errors import EXIT_OK
    from instrumentd.training.stem_bank import load_bank
    from instrumentd.training.train_audio import AudioTrainConfig, calibrate

    device = resolve_device(args.device)
    model, meta = checkpoint.load_checkpoint(args.checkpoint)
    trained_with = (meta.get("training") or {}).get("config") or {}
    seed = args.seed if args.seed is not None else int(trained_with.get("seed", 0))
    cfg = AudioTrainConfig(validation_clips=args.validation_clips, keep_music=args.keep_music,
                           keep_voiced=args.keep_voiced, seed=seed, amp=device.type == "cuda")
    features = FeatureConfig.from_dict(meta["features"])
    bank = load_bank(args.bank, features.sample_rate, device)
    decision, figures = calibrate(model, bank, cfg, features)
    extra = {k: v for k, v in meta.items() if k not in ("format", "variant", "classes", "features", "trained",
                                                         "weights_sha256", "decision")}
    extra["calibration"] = {"stem_bank": Path(args.bank).name,
                            **{k: getattr(cfg, k) for k in ("validation_clips", "keep_music", "keep_voiced", "seed")},
                            **{f"val_{k}": round(v, 4) for k, v in figures.items()}}
    checkpoint.save(args.out, model.cpu(), meta["variant"], features, tuple(meta["classes"]), meta["trained"],
                    decision=dataclasses.asdict(decision), **extra)
    print(f"no-instrument thresholds: top probability {decision.min_confidence:.4f}, pitched frames "
          f"{decision.min_voiced:.4f}; name an instrument in {figures['music_named']:.1%} of validation music "
          f"windows, reject {figures['none_rejected']:.1%} of non-music ones")
    print(f"checkpoint: {args.out}")
    return EXIT_OK
