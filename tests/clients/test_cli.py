import socket
import subprocess
import sys

import pytest

from instrumentd.clients.cli import COMMANDS, build_parser
from instrumentd.daemon.config import Config
from instrumentd.pipeline.errors import EXIT_ERROR, EXIT_OK, EXIT_STARTUP, EXIT_USAGE


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


def test_help_documents_the_exit_codes():
    out = _run("--help")
    text = " ".join(out.stdout.split())
    for code, meaning in ((EXIT_ERROR, "failed while running"), (EXIT_USAGE, "bad flags"), (EXIT_STARTUP, "could not start")):
        assert f"{code} {meaning}" in text


def test_exit_0_when_done(tmp_path):
    out = _run("serve", "--print-config", "--log-dir", str(tmp_path))
    assert out.returncode == EXIT_OK, out.stderr


@pytest.mark.parametrize("args", [["--max-batch", "many"], ["--hop", "9"], ["--source", "a=tape:x"]])
def test_exit_2_for_bad_flags_and_settings(args, tmp_path):
    out = _run("serve", "--print-config", "--log-dir", str(tmp_path), *args)
    assert out.returncode == EXIT_USAGE
    assert "Traceback" not in out.stderr


def test_exit_1_when_an_input_fails_while_running(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVE")
    out = _run("classify", str(broken), "--device", "cpu", "--format", "jsonl")
    assert out.returncode == EXIT_ERROR, out.stderr
    assert "broken.wav" in out.stdout


def test_exit_3_when_the_endpoint_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = "tcp://127.0.0.1:%d" % taken.getsockname()[1]
        out = _run("serve", "--source", "a=file:missing.wav", "--pub", endpoint, "--replay", "",
                   "--log-dir", str(tmp_path), "--device", "cpu")
    assert out.returncode == EXIT_STARTUP, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("instrumentd serve: error:")


def test_every_config_setting_is_a_serve_flag():
    import dataclasses

    text = _run("serve", "--help").stdout
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

    out = _run("serve", "--print-config", "--log-dir", str(tmp_path), "--max-batch", "64", "--silence-db", "-50",
               "--pitch-policy", "delay", "--hop", "0.5", "--source", "a=mic", "--source", "b=mic")
    assert out.returncode == EXIT_OK, out.stderr
    printed = tomllib.loads(out.stdout)
    assert (printed["max_batch"], printed["silence_db"], printed["pitch_policy"]) == (64, -50.0, "delay")
    assert printed["hop_s"] == 0.5 and printed["sources"] == ["a=mic", "b=mic"]
