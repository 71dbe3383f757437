"""``instrumentd evaluate CKPT TEST``: Table 3, Figure 4 and Figure 3 for a checkpoint on multi-label test clips."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_checkpoint_argument, add_device_argument, add_pitch_engine_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on multi-label test clips: P/R/F1 tables, plots, reports",
        description=(
            "Classify every test clip as DESIGN.md says (3 s windows every 1.5 s, class-wise sums divided by "
            "their maximum, threshold 0.5) and report per-class precision, recall and F1 with micro, macro "
            "and weighted averages (Table 3), per SoundFont where the clips have one. TEST is an IRMAS-layout "
            "test corpus (audio), any folder of NAME.wav + NAME.txt pairs (real recordings; an empty .txt "
            "means no predominant instrument, for non-music check clips), a stem bank ('synth-stems': its "
            "solo stems, each labelled with its class, a row per sample bank) or prepared test features "
            "('prepare --split test': folder or bundle); "
            "features skip pitch tracking and add a t-SNE plot of the embeddings. Writes report.json, "
            "report.md, per_class.png and tsne.png to --out."
        ),
    )
    add_checkpoint_argument(p)
    p.add_argument("test", metavar="TEST", help="test corpus root, test feature folder or test bundle")
    p.add_argument("--out", default=None, help="report folder (default: CKPT's name + '-eval' beside it)")
    p.add_argument("--soundfont", default=None, help="only clips rendered with these SoundFonts (comma list)")
    p.add_argument("--threshold", type=float, default=0.5, help="label threshold on S2 scores (default: 0.5)")
    add_device_argument(p)
    add_pitch_engine_argument(p)
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE plot")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from instrumentd.pipeline.errors import ParameterError

    if not 0 < args.threshold <= 1:  # before torch and the model load: a mistake is told at once
        raise ParameterError(f"--threshold must be in (0, 1], got {args.threshold}")

    from rich.console import Console
    from rich.markdown import Markdown
    from rich.progress import Progress

    from instrumentd.model.recognizer import Recognizer
    from instrumentd.training import evaluate as E
    from instrumentd.training.evaluate import evaluate_path
    from .train import sidecar, soundfont_list

    recognizer = Recognizer.from_checkpoint(args.checkpoint, args.device)
    if recognizer.untrained_warning:
        print(f"instrumentd evaluate: warning: {recognizer.untrained_warning}", file=sys.stderr)
    out = Path(args.out) if args.out else sidecar(args.checkpoint, "-eval")
    with Progress(transient=True) as progress:
        scores, features = evaluate_path(recognizer, args.test, soundfont_list(args.soundfont), args.pitch_engine,
                                         progress, args.threshold)
    rep = E.report(scores, args.threshold)
    rep["checkpoint"] = {"path": str(args.checkpoint), "id": recognizer.id, "variant": recognizer.meta["variant"],
                         "training": recognizer.meta.get("training", {}).get("data", {})}
    rep["test"] = str(args.test)
    title = f"{recognizer.id} on {args.test}"
    _, md = E.write_reports(rep, out, title)
    E.plot_per_class(rep, out / "per_class.png", f"{recognizer.id}: per-instrument scores")
    if features is not None and not args.no_tsne:
        vectors, classes = E.embeddings(recognizer, features)
        if len(vectors) >= 3:
            E.plot_tsne(vectors, classes, out / "tsne.png", f"{recognizer.id}: t-SNE of window embeddings")
        else:
            print("instrumentd evaluate: no t-SNE plot: it needs windows of clips with a single label", file=sys.stderr)
    Console().print(Markdown(md.read_text()))
    print(f"reports: {out}")
    return 0
