"""The ``instrumentd`` command: its help lists every subcommand, each says what it does, exit codes hold."""

import re
import socket
import subprocess
import sys

import pytest

from instrumentd.clients.cli import COMMANDS, build_parser, main
from instrumentd.daemon.config import Config
from instrumentd.pipeline.errors import EXIT_ERROR, EXIT_OK, EXIT_STARTUP, EXIT_USAGE


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


LISTED = listed_commands()


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
    assert out.returncode == 0 and all(f"    {name}" in out.stdout for name in LISTED)  # the real command's too
    assert {"serve", "classify", "tail", "train", "evaluate", "model-summary"} <= set(LISTED)
    assert all(summary for summary in LISTED.values()), LISTED


@pytest.mark.parametrize("command", sorted(LISTED))
def test_every_subcommand_has_help_that_says_what_it_does(command, capsys):
    description = description_of(command, capsys)
    assert description, f"`instrumentd {command} --help` has no description"
    assert description != LISTED[command], f"{command}'s description only repeats its summary"


def test_no_two_subcommands_share_a_description(capsys):
    descriptions = [description_of(c, capsys) for c in LISTED]
    assert len(set(descriptions)) == len(descriptions)


def test_no_command_prints_help_and_fails():
    out = run_command()
    assert out.returncode == 2 and "usage" in out.stdout


def test_help_documents_the_exit_codes():
    out = run_command("--help")
    text = " ".join(out.stdout.split())
    for code, meaning in ((EXIT_ERROR, "failed while running"), (EXIT_USAGE, "bad flags"), (EXIT_STARTUP, "could not start")):
        assert f"{code} {meaning}" in text


def test_exit_0_when_done(tmp_path):
    out = run_command("serve", "--print-config", "--log-dir", str(tmp_path))
    assert out.returncode == EXIT_OK, out.stderr


@pytest.mark.parametrize("args", [["--max-batch", "many"], ["--hop", "9"], ["--source", "a=tape:x"]])
def test_exit_2_for_bad_flags_and_settings(args, tmp_path):
    out = run_command("serve", "--print-config", "--log-dir", str(tmp_path), *args)
    assert out.returncode == EXIT_USAGE
    assert "Traceback" not in out.stderr


def test_exit_1_when_an_input_fails_while_running(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVE")
    out = run_command("classify", str(broken), "--device", "cpu", "--format", "jsonl")
    assert out.returncode == EXIT_ERROR, out.stderr
    assert "broken.wav" in out.stdout


def test_exit_3_when_the_endpoint_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = "tcp://127.0.0.1:%d" % taken.getsockname()[1]
        out = run_command("serve", "--source", "a=file:missing.wav", "--pub", endpoint, "--replay", "",
                   "--log-dir", str(tmp_path), "--device", "cpu")
    assert out.returncode == EXIT_STARTUP, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("instrumentd serve: error:")


def test_every_config_setting_is_a_serve_flag():
    import dataclasses

    text = run_command("serve", "--help").stdout
    for field in dataclasses.fields(Config):
        assert (field.metadata["flag"] or "--" + field.name.replace("_", "-")) + " " in text, field.name
    assert "--max-batch N" in text  # the out-of-memory advice names it


def test_every_subcommand_is_a_command_module():
    import importlib

    for name, module in COMMANDS.items():
        if name != "bench":  # each benchmark owns its flags
            assert module.startswith("instrumentd.clients.commands."), name
        loaded = importlib.import_module(module)
        assert callable(loaded.register) and callable(loaded.run), name


def test_generated_serve_flags_reach_the_config(tmp_path):
    import tomllib

    out = run_command("serve", "--print-config", "--log-dir", str(tmp_path), "--max-batch", "64", "--silence-db", "-50",
               "--pitch-policy", "delay", "--hop", "0.5", "--source", "a=mic", "--source", "b=mic")
    assert out.returncode == EXIT_OK, out.stderr
    printed = tomllib.loads(out.stdout)
    assert (printed["max_batch"], printed["silence_db"], printed["pitch_policy"]) == (64, -50.0, "delay")
    assert printed["hop_s"] == 0.5 and printed["sources"] == ["a=mic", "b=mic"]


def test_the_parser_is_built_without_torch_so_help_and_flag_errors_come_at_once():
    code = ("import sys; from instrumentd.clients.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'scipy', 'librosa') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
