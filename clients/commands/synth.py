"""``instrumentd synth OUT``: render a synthetic corpus in the IRMAS layout."""

from __future__ import annotations

import argparse

from .options import add_processes_argument, add_seed_argument

TRAINING = "fluidr3,timgm6mb"
EVALUATION = "fluidr3,timgm6mb,musescore"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="render a synthetic corpus (IRMAS layout) from generated MIDI with fluidsynth",
        description=(
            "Render training clips (3 s, one predominant class) and test clips (5-20 s, one to three "
            "predominant classes, .txt labels) from generated MIDI with fluidsynth. Training clips use "
            f"only the SoundFonts {TRAINING}; others (musescore) are reserved for evaluation and refused "
            "for training. Each test composition is rendered with every --test-soundfonts. The same "
            "--seed gives the same corpus; clips already on disk are kept, so an interrupted run resumes. "
            "synth.csv records each clip's SoundFont."
        ),
    )
    p.add_argument("out", metavar="OUT", help="corpus root to write")
    p.add_argument("--per-class", type=int, default=330, help="training clips per class (default: 330)")
    p.add_argument("--test-clips", type=int, default=60, help="test compositions (default: 60)")
    p.add_argument("--soundfonts", default=TRAINING, help=f"training SoundFonts, taken in turn (default: {TRAINING})")
    p.add_argument("--test-soundfonts", default=EVALUATION, help=f"test SoundFonts (default: {EVALUATION})")
    add_seed_argument(p)
    add_processes_argument(p)
    p.set_defaults(run=run)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from instrumentd.training.synth import default_processes, plan, synthesize

    specs = plan(args.per_class, args.test_clips, _names(args.soundfonts), _names(args.test_soundfonts), args.seed)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("rendering", total=len(specs))
        manifest = synthesize(args.out, specs, args.processes or default_processes(),
                              lambda n: progress.advance(task, n))
    print(f"{len(specs)} clips in {args.out} ({manifest.name} lists each clip's SoundFont)")
    return 0
