"""``instrumentd synth-stems OUT``: render a stem bank (solo parts, accompaniment, drums, non-music) for mixing."""

from __future__ import annotations

import argparse

from .options import add_processes_argument, add_seed_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    from instrumentd.training.stems import ACC_BASS_SHARE, BANKS, STEM_SECONDS

    p = subparsers.add_parser(
        "synth-stems",
        help="render a stem bank (solo parts, accompaniment, drums, non-music) for on-the-fly mixing",
        description=(
            "Render mono stems a trainer mixes on the fly: pred (a solo part of one class), acc "
            "(chords, pads, bass), drums (grooves) and none (speech, noise, hum, drums alone, near-silence, "
            "other sounds), listed in OUT/index.json. Musical stems come from generated MIDI played by "
            "every installed sample bank in turn; speech from espeak-ng. The same --seed gives the same "
            "bank; stems already on disk are kept, so an interrupted run resumes."
        ),
    )
    p.add_argument("out", metavar="OUT", help="stem bank folder to write")
    p.add_argument("--per-class", type=int, default=200,
                   help="solo stems per class; as many accompaniments and speech stems, half as many of "
                        "each other kind (default: 200)")
    p.add_argument("--banks", default=None,
                   help=f"comma-separated sample banks, taken in turn (default: every installed one of "
                        f"{', '.join(BANKS)})")
    add_seed_argument(p)
    p.add_argument("--seconds", type=float, default=STEM_SECONDS, help=f"stem length (default: {STEM_SECONDS})")
    p.add_argument("--format", choices=("ogg", "flac"), default="ogg",
                   help="ogg (Vorbis, about 45 kbit/s) or flac (lossless, 16 bit) (default: ogg)")
    p.add_argument("--codecs", type=float, default=0.0, metavar="SHARE",
                   help="share of the stems passed through a broadcast codec (MP3, AAC or Opus at 48-128 kbit/s, "
                        "through ffmpeg) before they are stored, each stem's codec in index.json (default: 0)")
    p.add_argument("--notes", type=float, default=0.0, metavar="SHARE",
                   help="share of the solo stems that are one held note, its pitch drawn evenly over the class's "
                        "range, as sample libraries and teaching sets record instruments (default: 0, melodies)")
    p.add_argument("--acc-bass", type=float, default=ACC_BASS_SHARE, metavar="SHARE",
                   help="share of the accompaniments with a bass line under their chords (default: "
                        f"{ACC_BASS_SHARE})")
    p.add_argument("--straight", type=float, default=0.0, metavar="SHARE",
                   help="share of the solo stems of sustained classes (strings, winds, voice) played without "
                        "the vibrato the renderer adds (a sound font preset's own stays), as many real players "
                        "and sample libraries hold a note (default: 0)")
    p.add_argument("--classes", default=None, metavar="CLS,CLS",
                   help="only solo stems of these classes (e.g. cel,vio), none of the other roles: extra stems "
                        "from a bank that plays only some classes, such as stk (default: every class and role)")
    p.add_argument("--add", action="store_true",
                   help="add the stems to the bank already at OUT: its index keeps the stems it lists and gains "
                        "these (to mix banks, e.g. a few classes from stk into a bank of sound fonts)")
    add_processes_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from instrumentd.training.stems import plan, synthesize_stems
    from instrumentd.training.synth import default_processes

    banks, classes = _names(args.banks), _names(args.classes)
    specs = plan(args.per_class, banks, args.seed, args.seconds, args.format, codec_share=args.codecs,
                 note_share=args.notes, bass_share=args.acc_bass, straight_share=args.straight, classes=classes)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("rendering stems", total=len(specs))
        index = synthesize_stems(args.out, specs, args.processes or default_processes(),
                                 lambda n: progress.advance(task, n), add=args.add)
    used = sorted({s.bank for s in specs})
    listed = f"{index.name} lists them" if not args.add else f"added to {index.name}"
    print(f"{len(specs)} stems in {args.out} from {', '.join(used)} ({listed})")
    return 0


def _names(text: str | None) -> tuple[str, ...] | None:
    """A comma list as given (None: not given; an empty list is the plan's to refuse)."""
    return None if text is None else tuple(name.strip() for name in text.split(",") if name.strip())
