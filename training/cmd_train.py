"""``instrumentd train FEATURES --out CKPT``: train a network with the paper's protocol."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a network on prepared features (the paper's protocol by default)",
        description=(
            "Train on a feature folder or bundle from 'instrumentd prepare': Adam (lr 1e-4), batch 16, "
            "100 epochs, cross-entropy, a stratified 80/20 train/validation split, Gaussian noise on the "
            "pitch mask while training. Keeps the checkpoint of the epoch with the best validation "
            "accuracy and writes CKPT's loss and accuracy curves (.curves.png) and history (.history.json) "
            "next to it. With --optimizers, trains once per optimizer for the first epochs (Figure 5) and "
            "writes one plot (.optimizers.png) instead of a checkpoint."
        ),
    )
    p.add_argument("features", metavar="FEATURES", help="feature folder or .safetensors bundle")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.safetensors)")
    p.add_argument("--variant", default="cross", choices=("cross", "mel", "mask", "concat", "han"),
                   help="network (default: cross, the paper's model)")
    p.add_argument("--epochs", type=int, default=100, help="epochs (default: 100; 10 with --optimizers)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default: 1e-4)")
    p.add_argument("--mask-noise", type=float, default=0.1, help="std of the noise on the mask (default: 0.1)")
    p.add_argument("--augment", action="store_true",
                   help="SpecAugment-style time shift and masking (beyond the paper's protocol)")
    p.add_argument("--timbre", action="store_true",
                   help="also a random smooth equaliser per clip on the mel (tilt +-6 dB, ripples +-2 dB), "
                        "for SoundFonts and instruments not seen in training; not the paper's protocol")
    p.add_argument("--mix", type=float, default=0.0, metavar="RATE",
                   help="share of each batch that gets another clip of another class added 0-6 dB quieter, "
                        "the target split by power (test clips often have several predominant instruments); "
                        "not the paper's protocol (default: 0)")
    p.add_argument("--init", default="", metavar="CKPT",
                   help="start from this checkpoint's weights (fine-tuning; same variant and features)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batches (default: 0)")
    p.add_argument("--soundfonts", default=None, help="train only on clips of these SoundFonts (comma list)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="run every step eagerly on CUDA (default: Adam's full batches replay one CUDA graph)")
    p.add_argument("--resume", action="store_true", help="continue from CKPT.state.pt when it exists")
    p.add_argument("--optimizers", default=None, metavar="LIST",
                   help="compare optimizers (adam,sgd,rmsprop,radam) over the first epochs: Figure 5")
    p.set_defaults(run=run)


def sidecar(ckpt: str | Path, suffix: str) -> Path:
    """``model.safetensors`` -> ``model<suffix>`` in the same folder."""
    ckpt = Path(ckpt)
    return ckpt.with_name(ckpt.name.removesuffix(".safetensors") + suffix)


def soundfont_list(text: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else None


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from instrumentd.model.recognizer import resolve_device
    from instrumentd.pipeline.errors import ParameterError

    from . import train as T
    from .dataset import load
    from .render import check_training_soundfonts

    device = resolve_device(args.device)
    features = load(args.features, "train", soundfont_list(args.soundfonts), device)
    check_training_soundfonts(features.soundfonts)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    if args.optimizers:
        names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
        for n in names:
            if n not in T.OPTIMIZERS:
                raise ParameterError(f"unknown optimizer {n!r}; choose from {', '.join(T.OPTIMIZERS)}")
        epochs = args.epochs if args.epochs != 100 else 10
        cfg = T.TrainConfig(args.variant, epochs, args.batch_size, args.lr, "adam", mask_noise=args.mask_noise,
                            seed=args.seed, amp=not args.no_amp)
        with Progress(*columns) as progress:
            task = progress.add_task("optimizers", total=epochs * len(names), status="")

            def on_epoch(name, s):
                progress.update(task, advance=1, status=f"{name} epoch {s.epoch} loss {s.train_loss:.3f}")

            histories = T.compare_optimizers(features, names, cfg, on_epoch)
        out = sidecar(args.out, ".optimizers.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        T.plot_optimizers(histories, out)
        sidecar(args.out, ".optimizers.json").write_text(
            json.dumps({n: [dataclasses.asdict(h) for h in hs] for n, hs in histories.items()}, indent=1))
        for n, hs in histories.items():
            print(f"{n:8s} training loss by epoch: " + " ".join(f"{h.train_loss:.3f}" for h in hs))
        print(f"figure: {out}")
        return 0
    cfg = T.TrainConfig(args.variant, args.epochs, args.batch_size, args.lr, mask_noise=args.mask_noise,
                        seed=args.seed, amp=not args.no_amp, augment=args.augment, timbre=args.timbre,
                        mix=args.mix, init=args.init)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with Progress(*columns) as progress:
        task = progress.add_task(f"training {cfg.variant} on {features.n_clips} clips ({device})",
                                 total=cfg.epochs, status="")

        def on_epoch(s):
            progress.update(task, completed=s.epoch, status=(
                f"loss {s.train_loss:.3f} acc {s.train_accuracy:.3f} | val loss {s.val_loss:.3f} "
                f"acc {s.val_accuracy:.3f} | {s.seconds:.1f} s/epoch"))

        result = T.train(features, cfg, sidecar(args.out, ".state.pt"), args.resume, on_epoch,
                           cuda_graph=not args.no_cuda_graph)
    T.save_checkpoint(result, features, cfg, args.out, Path(args.features).name)
    T.write_history(result.history, sidecar(args.out, ".history.json"))
    T.plot_curves(result.history, sidecar(args.out, ".curves.png"), f"{cfg.variant}, {features.n_clips} clips")
    b = result.best
    total = sum(h.seconds for h in result.history)
    print(f"best epoch {b.epoch}: validation accuracy {b.val_accuracy:.4f}, loss {b.val_loss:.4f}; "
          f"{total:.1f} s training ({total / len(result.history):.2f} s/epoch)")
    print(f"checkpoint: {args.out}")
    return 0
