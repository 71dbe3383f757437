"""``instrumentd prepare CORPUS OUT``: features of an IRMAS-layout corpus as .pt files (and a bundle)."""

from __future__ import annotations

import argparse

from .options import add_device_argument, add_pitch_engine_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="compute features of a corpus: one .pt file per clip, one folder per class",
        description=(
            "Compute mel spectrogram, pYIN pitch mask and predominant spectrogram for every clip of an "
            "IRMAS-layout corpus (IRMAS itself or one written by 'instrumentd synth'). Training clips go "
            "to OUT/<cls>/<name>.pt, test clips (--split test) to OUT/test/... with all their 3 s windows "
            "at a 1.5 s hop. Files already in OUT are kept, so an interrupted run resumes. With --bundle "
            "the features in OUT are also packed into one compact safetensors file (mel in 0.3 dB steps, "
            "the mask as one band per frame) that 'train' and 'evaluate' read."
        ),
    )
    p.add_argument("corpus", metavar="CORPUS", help="corpus root (holds IRMAS-TrainingData and/or IRMAS-TestingData-Part*)")
    p.add_argument("out", metavar="OUT", help="feature folder to write")
    p.add_argument("--split", choices=("train", "test"), default="train", help="which part of the corpus (default: train)")
    add_pitch_engine_argument(p)
    add_device_argument(p)
    p.add_argument("--batch-size", type=int, default=None,
                   help="3 s windows per batch (default: 4 on a CPU, 256 on a GPU, the fastest measured)")
    p.add_argument("--clean-mask", action="store_true", help="store the cleaned pitch mask (Table 5) instead of the raw one")
    p.add_argument("--bundle", metavar="FILE", help="also pack OUT into this .safetensors bundle")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from instrumentd.pipeline.errors import ParameterError

    if args.batch_size is not None and args.batch_size < 1:  # before torch loads: a mistake is told at once
        raise ParameterError(f"--batch-size must be at least 1, got {args.batch_size}")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from instrumentd.pipeline.devices import resolve_device
    from instrumentd.pipeline import DEFAULT, FeatureExtractor
    from instrumentd.pipeline.pitch import DEFAULT_ENGINE

    from instrumentd.training.dataset import pack
    from instrumentd.training.prepare import jobs, mask_cleaner, prepare

    engine = args.pitch_engine or DEFAULT_ENGINE
    device = resolve_device(args.device)
    extractor = FeatureExtractor(DEFAULT, engine, device)
    cleaner = mask_cleaner() if args.clean_mask else None
    total = len(jobs(args.corpus, args.out, args.split))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task(f"preparing ({engine} pitch, {extractor.device})", total=total)
        written = prepare(args.corpus, args.out, args.split, extractor, engine, args.batch_size, cleaner,
                          lambda n: progress.advance(task, n))
    print(f"{written} clips prepared, {total - written} already there, in {args.out}")
    if args.bundle:
        path, n = pack(args.out, args.bundle, args.split)
        print(f"{n} clips packed into {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
