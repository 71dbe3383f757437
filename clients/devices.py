"""``instrumentd devices``: the audio input devices PortAudio sees, as ``serve --source mic:DEVICE`` takes them."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any


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


def input_devices() -> list[dict[str, Any]]:
    """Every device with input channels: ``{"index", "name", "hostapi", "channels", "rate", "default", "spec"}``.

    Raises InstrumentdError when PortAudio itself cannot be loaded.
    """
    from instrumentd.pipeline.errors import InstrumentdError

    try:
        import sounddevice
    except OSError as exc:  # the Python package is there, the PortAudio library is not
        raise InstrumentdError(f"cannot use audio input devices ({exc}); install PortAudio (libportaudio2)") from None
    hostapis = sounddevice.query_hostapis()
    default = sounddevice.default.device[0]
    return [
        {"index": d["index"], "name": d["name"], "hostapi": hostapis[d["hostapi"]]["name"],
         "channels": d["max_input_channels"], "rate": int(d["default_samplerate"]),
         "default": d["index"] == default, "spec": f"mic:{d['index']}"}
        for d in sounddevice.query_devices() if d["max_input_channels"] > 0
    ]


def run(args: argparse.Namespace) -> int:
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
