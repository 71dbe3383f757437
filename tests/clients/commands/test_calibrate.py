"""``instrumentd calibrate``: new thresholds chosen on a stem bank's validation clips, the weights untouched."""

from __future__ import annotations

import pytest

from instrumentd.clients.cli import main
from instrumentd.model import checkpoint
from instrumentd.model.networks import build
from instrumentd.model.recognizer import Recognizer
from instrumentd.pipeline.config import DEFAULT


def test_calibrate_writes_the_same_weights_with_thresholds_chosen_on_validation_clips(stem_bank, tmp_path, capsys):
    before = tmp_path / "before.safetensors"
    checkpoint.save(before, build("cross"), "cross", DEFAULT, trained=True,
                    training={"config": {"seed": 3}}, decision={"min_confidence": 0.9})
    after = tmp_path / "after.safetensors"
    code = main(["calibrate", str(before), str(stem_bank), "--out", str(after), "--validation-clips", "8",
                 "--keep-music", "0.5", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    old, new = checkpoint.read_metadata(before), checkpoint.read_metadata(after)
    assert new["weights_sha256"] == old["weights_sha256"] and new["training"] == old["training"]
    assert new["calibration"]["seed"] == 3 and new["calibration"]["validation_clips"] == 8
    decision = Recognizer.from_checkpoint(after, "cpu").decision
    assert decision.min_confidence != 0.9 and 0 < decision.min_confidence < 1 and 0 <= decision.min_voiced <= 1
    assert f"top probability {decision.min_confidence:.4f}" in printed
    # half the music windows keep a label, by construction of the threshold
    assert new["calibration"]["val_music_named"] >= 0.5 - 1 / 8


def test_a_missing_bank_is_a_one_line_error(tmp_path, capsys):
    ckpt = tmp_path / "m.safetensors"
    checkpoint.save(ckpt, build("cross"), "cross", DEFAULT, trained=True)
    assert main(["calibrate", str(ckpt), str(tmp_path / "nope"), "--out", str(tmp_path / "o.safetensors"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("instrumentd calibrate: error:") and "nope" in err and "\n" not in err


@pytest.mark.parametrize("flag, value", [("--keep-music", "0"), ("--keep-voiced", "1.5"), ("--validation-clips", "0")])
def test_bad_shares_and_counts_are_named(stem_bank, tmp_path, capsys, flag, value):
    ckpt = tmp_path / "m.safetensors"
    checkpoint.save(ckpt, build("cross"), "cross", DEFAULT, trained=True)
    code = main(["calibrate", str(ckpt), str(stem_bank), "--out", str(tmp_path / "o.safetensors"), flag, value,
                 "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert flag.lstrip("-").replace("-", "_") in err or flag.lstrip("-").replace("-", " ") in err
