"""``instrumentd devices`` through PortAudio, with a JACK server on the dummy driver as the sound card:
the JACK input in the --json array and in the table, under the spec the daemon opens."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, env=env)


def test_lists_the_jack_input_as_mic_takes_it(jack_env):
    listed = _run("instrumentd", "devices", "--json", env=jack_env)
    assert listed.returncode == 0, listed.stderr
    jack_inputs = [d for d in json.loads(listed.stdout) if d["hostapi"].startswith("JACK")]
    assert [(d["name"], d["channels"], d["rate"]) for d in jack_inputs] == [("system", 2, 44100)]
    spec = jack_inputs[0]["spec"]
    table = _run("instrumentd", "devices", env=jack_env)
    assert table.returncode == 0 and spec in table.stdout and "mic:system" in table.stdout
    # the daemon opens the device by the spec shown: its own query of a mic: target answers
    target = spec.split(":", 1)[1]
    opened = _run("instrumentd.daemon.sources", "query", target, env=jack_env)
    assert opened.returncode == 0 and json.loads(opened.stdout) == {"name": "system", "rate": 44100}
