"""Stem banks: decoded onto the device by role, banks left out, bad banks refused in one line."""

import json

import pytest
import torch

from instrumentd.model.classes import CLASSES
from instrumentd.training.stem_bank import BankError, load_bank, read_index, split_stems

from .conftest import SR, write_stem_bank


def test_load_by_role(stem_bank):
    bank = load_bank(stem_bank, SR, room_count=2)
    assert bank.counts() == {"pred": 2 * len(CLASSES), "acc": 2, "drums": 2, "none": 2}
    assert bank.samples == int(3.5 * SR) and bank.audio["pred"].dtype == torch.float16
    assert bank.label.tolist() == [k for k in range(len(CLASSES)) for _ in range(2)]
    assert bank.kinds == ["noise", "noise"] and bank.rooms.shape[0] > 0
    assert float(bank.audio["pred"].abs().max()) == pytest.approx(0.3, abs=0.06)


def test_a_bank_left_out(stem_bank):
    bank = load_bank(stem_bank, SR, exclude_banks=("b",), room_count=2)
    assert bank.counts()["pred"] == len(CLASSES) and set(bank.banks["pred"]) == {"a"}
    with pytest.raises(BankError, match="no pred stem|no acc"):
        load_bank(stem_bank, SR, exclude_banks=("a",), room_count=2)


def test_split_holds_out_stems_of_every_class(tmp_path):
    bank = load_bank(write_stem_bank(tmp_path, per_class=4), SR, room_count=2)
    train, val = split_stems(bank, 0.25, seed=0)
    assert sorted(bank.label[val["pred"]].tolist()) == list(range(len(CLASSES)))
    assert not set(train["pred"].tolist()) & set(val["pred"].tolist())
    assert len(train["pred"]) == 3 * len(CLASSES)


def test_bad_banks(tmp_path):
    with pytest.raises(BankError, match="not a stem bank"):
        read_index(tmp_path)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(BankError, match="malformed"):
        read_index(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"sample_rate": SR, "stems": [{"path": "x", "role": "solo"}]}))
    with pytest.raises(BankError, match="bad stem entry"):
        read_index(tmp_path)
