"""``instrumentd synth-nonmusic OUT``: a non-music check set (IRMAS test layout, empty labels)."""

from __future__ import annotations

import argparse

from .options import add_seed_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth-nonmusic",
        help="write a non-music check set (speech, drums alone, noise, hum, silence, other sounds; no labels)",
        description=(
            "Write 5-10 s clips with no predominant instrument in the IRMAS test layout (NAME.wav + an "
            "empty NAME.txt): espeak-ng speech in voices and languages never used for training stems, "
            "drums alone (fluidsynth), noise, mains hum, digital silence, wind, applause, clicks, rain. "
            "For checking rejection only, never for training."
        ),
    )
    p.add_argument("out", metavar="OUT", help="folder to write")
    p.add_argument("--clips", type=int, default=10, help="clips per kind (default: 10)")
    add_seed_argument(p)
    p.add_argument("--soundfont", default="fluidr3", help="SoundFont of the drum clips (default: fluidr3)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from instrumentd.training.nonmusic import KINDS, write_check_set

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()) as progress:
        task = progress.add_task("writing clips", total=args.clips * len(KINDS))
        paths = write_check_set(args.out, args.clips, args.seed, args.soundfont, lambda n: progress.advance(task, n))
    print(f"{len(paths)} non-music clips in {args.out}")
    return 0
