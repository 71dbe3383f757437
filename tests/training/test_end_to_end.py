"""synth -> prepare -> train -> evaluate through the real command, on a tiny corpus. Each command starts
once what it reads is written: the test split's features are prepared while the model trains, and the
two evaluations run side by side."""

from __future__ import annotations

import json

import pytest

from instrumentd.model import read_metadata

from ..conftest import instrumentd, side_by_side


def run_together(*steps: tuple[str, ...]) -> None:
    """Run ``python -m instrumentd STEP...`` for each of ``steps`` at once; every one must exit 0."""
    done = side_by_side(*(lambda step=step: instrumentd(*step, timeout=600) for step in steps))
    for step, proc in zip(steps, done):
        assert proc.returncode == 0, (step[0], proc.stderr[-2000:])


@pytest.mark.slow
def test_synth_prepare_train_evaluate(tmp_path, fluidsynth_available):
    corpus, feats, ckpt = tmp_path / "corpus", tmp_path / "features", tmp_path / "m.safetensors"
    stages = [  # the commands of a stage run together; each reads only what earlier stages wrote
        [("synth", str(corpus), "--per-class", "2", "--test-clips", "2", "--soundfonts", "timgm6mb",
          "--test-soundfonts", "timgm6mb,musescore", "--seed", "5")],
        [("prepare", str(corpus), str(feats), "--device", "cpu", "--bundle", str(tmp_path / "train.safetensors"))],
        [("prepare", str(corpus), str(feats), "--split", "test", "--device", "cpu"),
         ("train", str(tmp_path / "train.safetensors"), "--out", str(ckpt), "--epochs", "1", "--device", "cpu")],
        [("evaluate", str(ckpt), str(corpus), "--out", str(tmp_path / "eval-audio"), "--device", "cpu",
          "--soundfont", "musescore", "--no-tsne"),
         ("evaluate", str(ckpt), str(feats), "--out", str(tmp_path / "eval-feats"), "--device", "cpu")],
    ]
    for stage in stages:
        run_together(*stage)
    assert len(list((corpus / "IRMAS-TrainingData").glob("*/*.wav"))) == 22
    assert len(list(feats.glob("*/*.pt"))) == 22
    meta = read_metadata(ckpt)
    assert meta["trained"] and meta["training"]["data"]["soundfonts"] == {"timgm6mb": 22}
    for suffix in (".curves.png", ".history.json", ".state.pt"):
        assert (tmp_path / f"m{suffix}").is_file()
    audio = json.loads((tmp_path / "eval-audio" / "report.json").read_text())
    assert audio["clips"] == 2 and set(audio["by_soundfont"]) == {"musescore"}
    feats_rep = json.loads((tmp_path / "eval-feats" / "report.json").read_text())
    assert feats_rep["clips"] == 4 and set(feats_rep["by_soundfont"]) == {"timgm6mb", "musescore"}
    # same windows, same model: the musescore clips score alike from audio and from prepared features
    by_clip = {p["clip"]: p["scores"] for p in feats_rep["predictions"]}
    for p in audio["predictions"]:
        assert p["scores"] == pytest.approx(by_clip[p["clip"]], abs=0.02)
    for name in ("report.md", "per_class.png", "tsne.png"):
        assert (tmp_path / "eval-feats" / name).is_file()
