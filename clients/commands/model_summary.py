"""``instrumentd model-summary``: Table-2-style rows for a network variant."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from instrumentd.model.classes import VARIANT_NAMES

    p = subparsers.add_parser(
        "model-summary",
        help="print a network's layers, output shapes and parameter counts",
        description="Print Table-2-style rows (layer, output shape, parameters) and the total for a network variant.",
    )
    p.add_argument("--variant", default="cross", choices=VARIANT_NAMES, help="network variant (default: cross)")
    p.add_argument("--frames", type=int, default=100, help="input frames (100 at a 30 ms hop, 300 at 10 ms)")
    p.add_argument("--batch", type=int, default=4, help="batch size shown in the shapes (Table 2 uses 4)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from instrumentd.model.networks import DESCRIPTIONS, build, count_parameters
    from instrumentd.model.summary import summary_rows
    from instrumentd.pipeline.errors import ParameterError

    if args.frames < 8 or args.batch < 1:
        raise ParameterError(f"--frames must be >= 8 and --batch >= 1, got {args.frames}, {args.batch}")
    model = build(args.variant)
    table = Table(title=f"{DESCRIPTIONS[args.variant]} ({args.variant})")
    table.add_column("Layer (type)")
    table.add_column("Output shape")
    table.add_column("Params", justify="right")
    for name, shape, params in summary_rows(model, args.batch, frames=args.frames):
        table.add_row(name, str(list(shape)), f"{params:,}")
    total = count_parameters(model)
    table.add_section()
    table.add_row("Total parameters", "", f"{total:,}")
    Console(width=100).print(table)
    return 0
