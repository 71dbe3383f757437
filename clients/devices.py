"""The audio input devices PortAudio sees, as ``serve --source mic:DEVICE`` takes them."""

from __future__ import annotations

from typing import Any


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
