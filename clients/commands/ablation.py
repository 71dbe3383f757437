"""``instrumentd ablation FEATURES TEST``: Table 4 (four variants) and Table 5 (noisy vs clean mask)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ablation",
        help="Tables 4 and 5: train and test the four variants, and the noisy vs the clean mask",
        description=(
            "Train MelCNN-only, MaskCNN-only, Mel+Mask concat and the cross-attention model on FEATURES with "
            "the same protocol, seed and split, and score each on the prepared test features TEST (folder or "
            "bundle from 'prepare --split test'): Table 4. Then train and test the cross-attention model on the "
            "cleaned pitch mask: Table 5. Writes the checkpoints, one JSON file per row, ablation.json and "
            "ablation.md to --out. FEATURES may instead be a stem bank ('instrumentd synth-stems'): "
            "--clips training clips are then mixed once from its training stems and --test-clips test clips "
            "(some with two predominant classes) from stems held out, and TEST is not given. --rows runs some "
            "rows only, so that rows can run in separate processes into one --out; the tables then hold every "
            "row found there."
        ),
    )
    p.add_argument("features", metavar="FEATURES", help="training feature folder or bundle, or a stem bank")
    p.add_argument("test", metavar="TEST", nargs="?", help="test feature folder or bundle (not with a stem bank)")
    p.add_argument("--rows", default=None, metavar="LIST",
                   help="rows to train and test, of mel,mask,concat,cross (Table 4) and clean (Table 5) "
                        "(default: all)")
    p.add_argument("--clips", type=int, default=6600, help="stem bank only: training clips mixed (default: 6600)")
    p.add_argument("--test-clips", type=int, default=1100, help="stem bank only: test clips mixed (default: 1100)")
    p.add_argument("--out", default="ablation", help="output folder (default: ./ablation)")
    p.add_argument("--epochs", type=int, default=100, help="epochs per model (default: 100)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--soundfonts", default=None, help="train only on clips of these SoundFonts (comma list)")
    add_device_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import torch

    from instrumentd.pipeline.devices import resolve_device
    from instrumentd.pipeline.errors import ParameterError

    from instrumentd.training.ablation import ROWS, ablation, markdown
    from .train import soundfont_list
    from instrumentd.training.dataset import load_features
    from instrumentd.training.prepare import mask_cleaner
    from instrumentd.training.render import check_training_soundfonts
    from instrumentd.training.train import TrainConfig

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # kernels, graphs and streams all on the chosen GPU
    rows = ROWS if args.rows is None else tuple(r.strip() for r in args.rows.split(",") if r.strip())
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        raise ParameterError(f"--rows: unknown row {unknown[0] if unknown else args.rows!r}; rows are {','.join(ROWS)}")
    if (Path(args.features) / "index.json").is_file():
        if args.test or args.soundfonts:
            raise ParameterError("with a stem bank the test clips are mixed from held-out stems: give no TEST "
                                 "and no --soundfonts")
        from instrumentd.pipeline.config import DEFAULT

        from instrumentd.training.stem_bank import load_bank
        from instrumentd.training.train_audio import fixed_feature_sets

        bank = load_bank(args.features, DEFAULT.sample_rate, device)
        train_set, test_set = fixed_feature_sets(bank, args.clips, args.test_clips, args.seed)
        del bank
    else:
        if not args.test:
            raise ParameterError("TEST (prepared test features) is needed unless FEATURES is a stem bank")
        train_set = load_features(args.features, "train", soundfont_list(args.soundfonts), device)
        check_training_soundfonts(train_set.soundfonts)
        test_set = load_features(args.test, "test", None, device)
    try:
        cleaner = mask_cleaner()
    except ParameterError as exc:
        print(f"instrumentd ablation: warning: {exc}; Table 5 gets its noisy row only")
        cleaner = None
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    runs = sum(r != "clean" or cleaner is not None for r in rows)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns) as progress:
        task = progress.add_task(f"ablation ({device})", total=runs * cfg.epochs, status="")
        results = ablation(train_set, test_set, cfg, args.out, cleaner, lambda name, s: progress.update(
            task, advance=1, status=f"{name} epoch {s.epoch} val acc {s.val_accuracy:.3f}"), rows)
    out = Path(args.out)
    (out / "ablation.json").write_text(json.dumps(results, indent=1))
    md = markdown(results)
    (out / "ablation.md").write_text(md)
    print(md)
    return 0
