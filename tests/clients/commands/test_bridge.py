"""``instrumentd bridge mqtt|osc``'s command line: a flag for every setting, flags over the TOML table,
one-line errors."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest

from instrumentd.clients.bridge import BRIDGES, load_settings
from instrumentd.clients.cli import build_parser


def test_bad_input_is_one_line(tmp_path):
    for args, message in ((["mqtt", "--config", str(tmp_path / "missing.toml")], "missing.toml"),
                          (["osc", "--osc", "tcp://127.0.0.1:9000"], "udp://HOST:PORT")):
        out = subprocess.run([sys.executable, "-m", "instrumentd", "bridge", *args], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr


@pytest.mark.parametrize("kind", sorted(BRIDGES))
def test_every_setting_is_a_flag_of_its_bridge(kind):
    """Each field of the bridge's Settings is a flag of ``bridge KIND``, not given unless named."""
    args = vars(build_parser().parse_args(["bridge", kind]))
    fields = [f.name for f in dataclasses.fields(importlib.import_module(BRIDGES[kind]).Settings)]
    assert [name for name in fields if name not in args] == []
    assert all(args[name] is None for name in fields)  # so the TOML table and the defaults show through


def test_a_flag_wins_over_the_config_table(tmp_path):
    config = tmp_path / "instrumentd.toml"
    config.write_text('[bridge.mqtt]\nqos = 1\nprefix = "studio"\nha-discovery = true\n')
    args = build_parser().parse_args(["bridge", "mqtt", "--config", str(config), "--qos", "2",
                                      "--connect", "tcp://10.0.0.5:5555", "--connect", "tcp://10.0.0.6:5555"])
    settings = load_settings(importlib.import_module(BRIDGES["mqtt"]).Settings, args.config, vars(args),
                             "bridge.mqtt")
    assert (settings.qos, settings.prefix, settings.ha_discovery) == (2, "studio", True)
    assert settings.connect == ["tcp://10.0.0.5:5555", "tcp://10.0.0.6:5555"]
