import subprocess
import sys

import pytest

from instrumentd.daemon.config import load_config, parse_source
from instrumentd.pipeline.errors import ParameterError


@pytest.mark.parametrize("text, name, kind, target", [
    ("file:a/b/My Song.wav", "My-Song", "file", "a/b/My Song.wav"),
    ("x=file+fast:/tmp/a.flac", "x", "file+fast", "/tmp/a.flac"),
    ("mic", "mic", "mic", ""),
    ("studio=mic:2", "studio", "mic", "2"),
    ("ffmpeg:http://host:8000/s.mp3?a=b", "ffmpeg", "ffmpeg", "http://host:8000/s.mp3?a=b"),
    ("radio=ffmpeg:rtsp://h/x", "radio", "ffmpeg", "rtsp://h/x"),
])
def test_parse_source(text, name, kind, target):
    spec = parse_source(text)
    assert (spec.name, spec.kind, spec.target) == (name, kind, target)
    assert parse_source(spec.spec) == spec


def test_parse_stdin():
    spec = parse_source("in=stdin:s16le:48000:2")
    assert spec.pcm == ("<i2", 48000, 2)
    assert parse_source(spec.spec) == spec


@pytest.mark.parametrize("text, fragment", [
    ("tape:x.wav", "unknown kind 'tape'"),
    ("file:", "needs a path"),
    ("stdin:f32le:48000", "FORMAT:RATE:CHANNELS"),
    ("stdin:f24le:48000:2", "'f24le'"),
    ("stdin:f32le:fast:2", "integers"),
    ("../x=file:a.wav", "'../x'"),
    (".hidden=mic", "'.hidden'"),
])
def test_bad_sources_name_the_value(text, fragment):
    with pytest.raises(ParameterError, match=None) as err:
        parse_source(text)
    assert fragment in str(err.value)


def test_precedence_file_env_flags(tmp_path):
    toml = tmp_path / "d.toml"
    toml.write_text('hop = 0.5\npub = "tcp://127.0.0.1:6000"\nsources = ["a=mic"]\nsmooth = 5\n')
    cfg = load_config(toml, env={"INSTRUMENTD_HOP": "0.25", "INSTRUMENTD_SMOOTH": "4"}, hop_s=2.0, sources=None)
    assert cfg.hop_s == 2.0  # flag beats environment beats file
    assert cfg.smooth == 4  # environment beats file
    assert cfg.pub == "tcp://127.0.0.1:6000"  # file beats default
    assert cfg.sources == ["a=mic"]  # flag not given: the file's


def test_old_name_hop_is_read_and_the_new_one_wins(tmp_path):
    toml = tmp_path / "d.toml"
    toml.write_text("hop = 0.5\n")
    assert load_config(toml, env={}).hop_s == 0.5
    assert load_config(env={"INSTRUMENTD_HOP": "0.25"}).hop_s == 0.25
    assert load_config(env={"INSTRUMENTD_HOP": "0.25", "INSTRUMENTD_HOP_S": "2"}).hop_s == 2.0


def test_choices_are_checked_from_one_map():
    from instrumentd.daemon.config import CHOICES

    for name, allowed in CHOICES.items():
        assert getattr(load_config(env={}, **{name: allowed[-1]}), name) == allowed[-1]
        with pytest.raises(ParameterError, match=f"{name} 'no-such' is not one of"):
            load_config(env={}, **{name: "no-such"})


@pytest.mark.parametrize("settings, fragment", [
    ({"hop_s": 0.05}, "hop_s (--hop) must be 0.1-3.0 seconds, got 0.05"),
    ({"hop_s": 3.5}, "got 3.5"),
    ({"device": "gpu"}, "'gpu'"),
    ({"pub": "localhost:5555"}, "'localhost:5555'"),
    ({"pub": "tcp://127.0.0.1:1", "replay": "tcp://127.0.0.1:1"}, "must differ"),
    ({"sources": ["a=mic", "a=file:x.wav"]}, "a repeated"),
    ({"off_threshold": 0.6, "on_threshold": 0.5}, "off_threshold"),
    ({"inference": "fastest"}, "inference must be one of auto, eager, fp16"),
    ({"processes": 0}, "processes must be 1-64, got 0"),
])
def test_bad_settings(settings, fragment):
    with pytest.raises(ParameterError) as err:
        load_config(env={}, **settings)
    assert fragment in str(err.value)


def test_bad_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("hop = 'slow'\n")
    with pytest.raises(ParameterError, match="hop = 'slow'"):
        load_config(bad, env={})
    bad.write_text("hops = 1\n")
    with pytest.raises(ParameterError, match="unknown settings hops"):
        load_config(bad, env={})
    with pytest.raises(ParameterError, match="INSTRUMENTD_MAX_BATCH"):
        load_config(env={"INSTRUMENTD_MAX_BATCH": "1.5"})


def test_live_preset_sits_under_file_env_and_flags(tmp_path):
    from instrumentd.daemon.config import PRESETS

    live = PRESETS["live"]
    assert load_config(env={}, preset="live").hop_s == live["hop_s"] and load_config(env={}, preset="live").smooth == live["smooth"]
    toml = tmp_path / "d.toml"
    toml.write_text('preset = "live"\nsmooth = 5\n')
    cfg = load_config(toml, env={}, hop_s=0.1)
    assert (cfg.preset, cfg.hop_s, cfg.smooth) == ("live", 0.1, 5)  # the file and the flag beat the preset
    assert load_config(env={"INSTRUMENTD_PRESET": "live"}).hop_s == live["hop_s"]


@pytest.mark.parametrize("settings, fragment", [
    ({"preset": "fast"}, "preset 'fast' is not one of live"),
    ({"metrics": "9108"}, "metrics '9108' is not HOST:PORT"),
    ({"metrics": "127.0.0.1:70000"}, "is not HOST:PORT"),
    ({"metrics": "0.0.0.0:9108"}, "reachable from other machines over plain HTTP"),
    ({"metrics": "[::]:9108"}, "reachable from other machines"),
    ({"metrics": "127.0.0.1:9108", "processes": 2, "sources": ["a=mic", "b=mic"]}, "metrics serves one daemon"),
])
def test_bad_metrics_and_preset_settings(settings, fragment):
    with pytest.raises(ParameterError) as err:
        load_config(env={}, **settings)
    assert fragment in str(err.value)


def test_metrics_on_loopback_or_with_insecure():
    assert load_config(env={}, metrics="127.0.0.1:9108").metrics == "127.0.0.1:9108"
    assert load_config(env={}, metrics="[::1]:9108").metrics == "[::1]:9108"
    assert load_config(env={}, metrics="0.0.0.0:9108", insecure=True).metrics == "0.0.0.0:9108"


def test_a_config_is_checked_without_loading_torch():
    """torch takes seconds to load with CUDA: a bad setting is named before that."""
    code = ("import sys; from instrumentd.daemon.config import load_config; "
            "load_config(env={}, sources=['a=mic'], inference='graphs-fp32'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
