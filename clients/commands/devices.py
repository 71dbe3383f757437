"""``instrumentd devices``: the audio input devices PortAudio sees, as ``serve --source mic:DEVICE`` takes them."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "devices",
        help="list the audio inputs, as `--source mic:DEVICE` takes them",
        description=(
            "List the audio input devices PortAudio sees (ALSA, PulseAudio, JACK, Core Audio, WASAPI...): "
            "index, name, host API, input channels and default rate, with the --source spec that opens "
            "each (`mic:INDEX`, or `mic:NAME`, which matches part of a name). * marks the default input, "
            "which a plain `mic` opens."
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON array of the input devices")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from instrumentd.clients.devices import input_devices

    devices = input_devices()
    if args.json:
        print(json.dumps(devices))
        return 0
    if not devices:
        print("no audio input devices: PortAudio sees none (no sound card, or a sound server that is not running)",
              file=sys.stderr)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column, justify in (("", "left"), ("#", "right"), ("name", "left"), ("host API", "left"),
                            ("in", "right"), ("rate", "right"), ("--source", "left")):
        table.add_column(column, justify=justify)
    for d in devices:
        table.add_row("*" if d["default"] else "", str(d["index"]), d["name"], d["hostapi"], str(d["channels"]),
                      str(d["rate"]), f"{d['spec']}  or  {shlex.quote('mic:' + d['name'])}")
    Console(width=200 if not sys.stdout.isatty() else None).print(table)
    return 0
