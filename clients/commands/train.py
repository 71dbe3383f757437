"""``instrumentd train FEATURES --out CKPT``: train a network with the paper's protocol."""

from __future__ import annotations

import argparse
from pathlib import Path

from instrumentd.model.classes import VARIANT_NAMES

from .options import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a network on prepared features (the paper's protocol by default) or on a stem bank",
        description=(
            "Train on a feature folder or bundle from 'instrumentd prepare': Adam (lr 1e-4), batch 16, "
            "100 epochs, cross-entropy, a stratified 80/20 train/validation split, Gaussian noise on the "
            "pitch mask while training. Keeps the checkpoint of the epoch with the best validation "
            "accuracy and writes CKPT's loss and accuracy curves (.curves.png) and history (.history.json) "
            "next to it. With --optimizers, trains once per optimizer for the first epochs (Figure 5) and "
            "writes one plot (.optimizers.png) instead of a checkpoint. Given a stem bank from 'instrumentd "
            "synth-stems' instead, trains from audio: every epoch mixes --clips-per-epoch new clips from the "
            "stems on the device (accompaniment, drums, room, EQ, compression, noise, hum, varispeed; "
            "non-music clips against a uniform target), computes their features there and chooses the "
            "'no instrument' threshold on held-out stems (not the paper's protocol)."
        ),
    )
    p.add_argument("features", metavar="FEATURES", help="feature folder, .safetensors bundle or stem bank folder")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.safetensors)")
    p.add_argument("--variant", default="cross", choices=VARIANT_NAMES,
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
    add_device_argument(p)
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="run every step eagerly on CUDA (default: Adam's full batches replay one CUDA graph)")
    p.add_argument("--resume", action="store_true", help="continue from CKPT.state.pt when it exists")
    p.add_argument("--clips-per-epoch", type=int, default=6600, metavar="N",
                   help="stem bank only: clips mixed per epoch (default: 6600)")
    p.add_argument("--validation-clips", type=int, default=1100, metavar="N",
                   help="stem bank only: validation clips, mixed once from held-out stems (default: 1100)")
    p.add_argument("--recipe", default="", metavar="KEY=VALUE,...",
                   help="stem bank only: change the mixing recipe, e.g. none_share=0.25,acc_db=-24:-6 "
                        "(settings and defaults: training/audio_augment.py MixRecipe)")
    p.add_argument("--mask-drop", type=float, default=0.0, metavar="SHARE",
                   help="stem bank only: share of training clips whose pitch mask is blanked, so that the "
                        "network also learns to name instruments from the mel alone (default: 0)")
    p.add_argument("--max-minutes", type=float, default=0.0, metavar="M",
                   help="stem bank only: stop after the epoch that passes M minutes of training (default: no limit)")
    p.add_argument("--exclude-banks", default=None, metavar="LIST",
                   help="stem bank only: leave out the stems of these sample banks (comma list), e.g. to "
                        "measure how the model does on a bank it never heard")
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

    import torch

    from instrumentd.pipeline.devices import resolve_device
    from instrumentd.pipeline.errors import ParameterError

    from instrumentd.training import train as T
    from instrumentd.training.dataset import load_features
    from instrumentd.training.render import check_training_soundfonts

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # kernels, graphs and streams all on the chosen GPU
    if (Path(args.features) / "index.json").is_file():
        return run_from_audio(args, device)
    features = load_features(args.features, "train", soundfont_list(args.soundfonts), device)
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
    report_run(result, args.out, f"{cfg.variant}, {features.n_clips} clips", "")
    print(f"checkpoint: {args.out}")
    return 0


def report_run(result, out: str | Path, title: str, which: str) -> None:
    """History and curves beside the checkpoint ``out``; the best epoch and the time on stdout."""
    from instrumentd.training import train as T

    T.write_history(result.history, sidecar(out, ".history.json"))
    T.plot_curves(result.history, sidecar(out, ".curves.png"), title)
    b = result.best
    total = sum(h.seconds for h in result.history)
    print(f"best epoch {b.epoch}: validation accuracy {b.val_accuracy:.4f}{which}, loss {b.val_loss:.4f}; "
          f"{total:.1f} s training ({total / len(result.history):.2f} s/epoch)")


def run_from_audio(args: argparse.Namespace, device) -> int:
    """``train STEM_BANK``: clips mixed and featurised on the device every epoch (training/train_audio.py)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from instrumentd.pipeline.config import DEFAULT

    from instrumentd.training.audio_augment import MixRecipe
    from instrumentd.training.stem_bank import load_bank
    from instrumentd.training.train_audio import AudioTrainConfig, save_audio_checkpoint, train_from_audio

    excluded = soundfont_list(args.exclude_banks) or ()
    cfg = AudioTrainConfig(args.variant, args.epochs, args.clips_per_epoch, args.validation_clips,
                           batch_size=args.batch_size, lr=args.lr, mask_noise=args.mask_noise,
                           mask_drop=args.mask_drop, seed=args.seed, amp=not args.no_amp,
                           max_seconds=60 * args.max_minutes, recipe=MixRecipe().with_changes(args.recipe),
                           init=args.init)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns) as progress:
        task = progress.add_task("decoding stems", total=None, status="")
        bank = load_bank(args.features, DEFAULT.sample_rate, device, excluded,
                         lambda n: progress.advance(task, n))
        progress.update(task, total=sum(bank.counts().values()), completed=sum(bank.counts().values()))
        train_task = progress.add_task(f"training {cfg.variant} on {cfg.clips_per_epoch} mixed clips an epoch "
                                       f"({device})", total=cfg.epochs, status="")

        def on_epoch(s):
            progress.update(train_task, completed=s.epoch, status=(
                f"loss {s.train_loss:.3f} acc {s.train_accuracy:.3f} | val loss {s.val_loss:.3f} "
                f"acc {s.val_accuracy:.3f} | {s.seconds:.1f} s/epoch"))

        result, decision, figures = train_from_audio(bank, cfg, DEFAULT, on_epoch, cuda_graph=not args.no_cuda_graph)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_audio_checkpoint(result, decision, figures, bank, cfg, DEFAULT, args.out, Path(args.features).name, excluded)
    report_run(result, args.out, f"{cfg.variant}, stems mixed on the fly", " (music clips)")
    print(f"no-instrument threshold {decision.min_confidence:.3f}: names an instrument in "
          f"{figures['music_named']:.1%} of validation music windows, rejects {figures['none_rejected']:.1%} "
          "of non-music ones")
    print(f"checkpoint: {args.out}")
    return 0
