"""``instrumentd serve``'s command line, through the real command: settings from the file, the environment
and the flags in that order, --print-config's TOML, one-line errors and the exit codes --help promises."""

import os
import socket
import subprocess
import sys
import tomllib

import pytest

from instrumentd.clients.cli import main
from instrumentd.daemon.config import Config, load_config

from ...conftest import loopback, one_line_error


def serve(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "instrumentd", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_print_config_round_trips(tmp_path):
    """`serve --print-config` prints TOML that loads back to the same Config, and a bad flag is one line."""
    out = subprocess.run([sys.executable, "-m", "instrumentd", "serve", "--print-config", "--hop", "0.5",
                          "--source", "a=file:x.wav", "--log-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    printed = tomllib.loads(out.stdout)
    assert printed["hop_s"] == 0.5 and printed["sources"] == ["a=file:x.wav"]
    (tmp_path / "c.toml").write_text(out.stdout)
    assert load_config(tmp_path / "c.toml", env={}) == Config(**printed)
    bad = subprocess.run([sys.executable, "-m", "instrumentd", "serve", "--print-config", "--hop", "9"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "instrumentd serve: error: hop_s (--hop) must be 0.1-3.0 seconds, got 9.0"


def test_flags_beat_the_environment_which_beats_the_file(tmp_path):
    toml = tmp_path / "serve.toml"
    toml.write_text('hop = 2.0\ndevice = "cpu"\nsmooth = 5\nsources = ["a=mic"]\n')
    out = serve("--config", str(toml), "--hop", "0.25", "--print-config",
                env={"INSTRUMENTD_HOP": "1.5", "INSTRUMENTD_SMOOTH": "7"})
    assert out.returncode == 0, out.stderr
    printed = tomllib.loads(out.stdout)
    assert (printed["hop_s"], printed["smooth"], printed["device"], printed["sources"]) == (0.25, 7, "cpu", ["a=mic"])


def test_no_source_is_a_usage_error_in_one_line(tmp_path):
    out = serve("--device", "cpu", "--log-dir", str(tmp_path / "events"), "--pub", loopback(), "--replay", "")
    assert out.returncode == 2
    one_line_error(out.stderr, "serve", "no sources", "--source")


def test_a_taken_endpoint_is_a_start_up_failure_exit_3(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        pub = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        out = serve("--source", "a=mic", "--pub", pub, "--replay", "", "--device", "cpu",
                    "--log-dir", str(tmp_path / "events"))
    assert out.returncode == 3, out.stderr
    assert "instrumentd serve: error: " in out.stderr and pub in out.stderr and "Traceback" not in out.stderr


def test_help_states_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit codes: 0 stopped or every source ended, 1 failed while serving, 2 bad flags" in text
    assert "3 could not start" in text
