"""``instrumentd interpolate``: writes a loadable blend without thresholds and says what to run next."""

from __future__ import annotations

from instrumentd.clients.cli import main
from instrumentd.model import checkpoint
from instrumentd.model.networks import build
from instrumentd.model.recognizer import Recognizer
from instrumentd.pipeline.config import DEFAULT


def test_interpolate_writes_a_blend_that_loads_and_names_the_next_step(tmp_path, capsys):
    a, b, out = (tmp_path / f"{n}.safetensors" for n in ("a", "b", "new"))
    checkpoint.save(a, build("cross"), "cross", DEFAULT)
    checkpoint.save(b, build("cross"), "cross", DEFAULT, decision={"min_confidence": 0.5, "min_voiced": 0.2})
    assert main(["interpolate", str(a), str(b), "--alpha", "0.25", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    meta = checkpoint.read_metadata(out)
    assert meta["interpolation"]["alpha"] == 0.25
    assert printed.startswith(checkpoint.checkpoint_id(meta)) and f"instrumentd calibrate {out}" in printed
    decision = Recognizer.from_checkpoint(out, "cpu").decision
    assert decision.min_confidence == 0.0 and decision.min_voiced == 0.0  # never rejects until calibrated


def test_a_bad_alpha_or_a_missing_file_is_a_one_line_error(tmp_path, capsys):
    a = tmp_path / "a.safetensors"
    checkpoint.save(a, build("cross"), "cross", DEFAULT)
    out = str(tmp_path / "new.safetensors")
    assert main(["interpolate", str(a), str(a), "--alpha", "-0.1", "--out", out]) == 2
    assert main(["interpolate", str(a), str(tmp_path / "nope.safetensors"), "--alpha", "0.5", "--out", out]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "alpha must be in [0, 1]" in lines[0] and "no such checkpoint" in lines[1]
    assert all(line.startswith("instrumentd interpolate: error:") for line in lines)
