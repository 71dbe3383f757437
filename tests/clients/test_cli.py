import subprocess
import sys

import pytest

from instrumentd.clients.cli import COMMANDS, build_parser


def _run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "instrumentd", *args], capture_output=True, text=True, timeout=120, **kw)


def test_top_level_help_lists_every_command():
    out = _run("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    text = sub.format_help()
    assert text.startswith(f"usage: instrumentd {command}")
    assert len(sub.description or "") > 20, f"{command} needs a description"


def test_model_summary_total():
    out = _run("model-summary")
    assert out.returncode == 0, out.stderr
    assert "878,331" in out.stdout
    assert "[4, 192, 256]" in out.stdout


def test_model_summary_other_variant_and_bad_value():
    out = _run("model-summary", "--variant", "han", "--frames", "300")
    assert out.returncode == 0 and "Total parameters" in out.stdout
    bad = _run("model-summary", "--frames", "2")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--frames" in bad.stderr


def test_no_command_prints_help_and_fails():
    out = _run()
    assert out.returncode == 2 and "usage" in out.stdout
