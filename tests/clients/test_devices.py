"""The audio inputs PortAudio sees (:mod:`instrumentd.clients.devices`), with a JACK server on the dummy
driver as the sound card."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# PortAudio looks for sound servers once, when it is loaded: a fresh process sees the test's JACK server
LIST = "import json; from instrumentd.clients.devices import input_devices; print(json.dumps(input_devices()))"


def test_every_input_is_described_with_the_spec_that_opens_it(jack_env):
    out = subprocess.run([sys.executable, "-c", LIST], capture_output=True, text=True, timeout=60, env=jack_env)
    assert out.returncode == 0, out.stderr
    devices = json.loads(out.stdout)
    jack = [d for d in devices if d["hostapi"].startswith("JACK")]
    assert [(d["name"], d["channels"], d["rate"]) for d in jack] == [("system", 2, 44100)]
    for d in devices:
        assert set(d) == {"index", "name", "hostapi", "channels", "rate", "default", "spec"}
        assert d["spec"] == f"mic:{d['index']}" and d["channels"] > 0 and isinstance(d["default"], bool)
    assert sum(d["default"] for d in devices) <= 1  # one default input at most
