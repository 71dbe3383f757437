"""The ``instrumentd`` command: its help lists every subcommand, each says what it does, exit codes hold."""

import re
import subprocess
import sys

import pytest

from instrumentd.clients.cli import build_parser, main


def run_command(*args, **kw):
    return subprocess.run([sys.executable, "-m", "instrumentd", *args], capture_output=True, text=True, timeout=120, **kw)


def listed_commands() -> dict[str, str]:
    """``{command: one-line summary}`` as ``instrumentd --help`` lists them (a summary may wrap)."""
    text = build_parser().format_help()
    block = text.split("COMMAND\n", 1)[1].split("\n\n", 1)[0]
    out: dict[str, str] = {}
    name = None
    for line in block.splitlines():
        m = re.match(r"^    (\S+)\s*(.*)$", line)
        if m:
            name = m.group(1)
            out[name] = m.group(2)
        elif name:
            out[name] = (out[name] + " " + line.strip()).strip()
    return out


COMMANDS = listed_commands()


def description_of(command: str, capsys) -> str:
    """The paragraph of ``instrumentd COMMAND --help`` between the usage and the arguments, on one line."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: instrumentd {command}")
    paragraphs = [p for p in text.split("\n\n")[1:] if not re.match(r"^(options|positional arguments|[^\n]*:\n)", p)]
    return " ".join(paragraphs[0].split()) if paragraphs else ""


def test_top_level_help_lists_every_command_with_a_summary():
    out = run_command("--help")
    assert out.returncode == 0 and all(f"    {name}" in out.stdout for name in COMMANDS)  # the real command's too
    assert {"serve", "classify", "tail", "train", "evaluate", "model-summary"} <= set(COMMANDS)
    assert all(summary for summary in COMMANDS.values()), COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help_that_says_what_it_does(command, capsys):
    description = description_of(command, capsys)
    assert description, f"`instrumentd {command} --help` has no description"
    assert description != COMMANDS[command], f"{command}'s description only repeats its summary"


def test_no_two_subcommands_share_a_description(capsys):
    descriptions = [description_of(c, capsys) for c in COMMANDS]
    assert len(set(descriptions)) == len(descriptions)


def test_no_command_prints_help_and_fails():
    out = run_command()
    assert out.returncode == 2 and "usage" in out.stdout
