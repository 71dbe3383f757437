"""prepare: DESIGN.md's .pt samples, test windows, resuming, bundles that round-trip, broken audio."""

from __future__ import annotations

import pytest
import torch

from instrumentd.pipeline import DEFAULT, AudioError, FeatureExtractor
from instrumentd.training import dataset
from instrumentd.training.prepare import prepare

from .conftest import TEST_FILES, TRAIN_FILES


@pytest.fixture
def extractor():
    return FeatureExtractor(DEFAULT, "torch")


def test_training_samples_follow_the_design(prepared):
    out = prepared
    assert len(list(out.glob("*/*.pt"))) == sum(map(len, TRAIN_FILES.values()))
    d = torch.load(out / "flu" / "[flu][dru][pop_roc]0101__2.pt", weights_only=True)
    for key in ("mel", "mask", "pred_spec"):
        assert d[key].dtype == torch.float32 and d[key].shape == (1, 128, 100)
    assert d["label"].dtype == torch.int64 and d["label"].shape == () and int(d["label"]) == 2
    assert set(d["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(d["pred_spec"], d["mel"] * d["mask"])
    assert d["meta"]["source"] == "IRMAS-TrainingData/flu/[flu][dru][pop_roc]0101__2.wav"
    assert d["meta"]["pitch_engine"] == "torch" and d["meta"]["hop_length"] == 1323
    # a harmonic tone at 880 * 1.05 hz is voiced, and its band is the one nearest f0
    voiced = d["mask"][0].sum(0) > 0
    assert voiced.float().mean() > 0.8


def test_resume_skips_finished_files(irmas_shared, prepared, tmp_path, extractor):
    import shutil

    out = tmp_path / "features"
    shutil.copytree(prepared, out)
    irmas = irmas_shared
    victim = out / "cel" / "[cel][cla]0001__2.pt"
    stamp = (out / "voi" / "[voi][jaz_blu]0202__2.pt").stat().st_mtime_ns
    victim.unlink()
    assert prepare(irmas, out, "train", extractor, "torch", batch_size=8) == 1
    assert victim.is_file()
    assert (out / "voi" / "[voi][jaz_blu]0202__2.pt").stat().st_mtime_ns == stamp


def test_test_clips_hold_all_windows(prepared):
    out = prepared
    d = torch.load(out / "test" / "IRMAS-TestingData-Part2/IRTestingData-Part2/02 - Cello song-3.pt", weights_only=True)
    # 6.4 s clip: windows at 0, 1.5, 3.0 and a last one ending at the clip's end (3.4 s)
    assert d["mel"].shape == (4, 1, 128, 100)
    assert d["starts"].tolist() == pytest.approx([0.0, 1.5, 3.0, 3.4], abs=1e-4)
    assert d["labels"].tolist() == [1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0]  # cel pia vio
    test = dataset.load_features(out, "test")
    assert test.n_clips == len(TEST_FILES) and len(test) == int(test.clip.bincount().sum())


def test_broken_audio_is_named(irmas, tmp_path, extractor):
    bad = irmas / "IRMAS-TrainingData" / "voi" / "[voi][pop_roc]0200__1.wav"
    bad.write_bytes(bad.read_bytes()[:30])  # a header cut short
    with pytest.raises(AudioError, match=r"\[voi\]\[pop_roc\]0200__1.wav"):
        prepare(irmas, tmp_path / "features", "train", extractor, "torch", batch_size=4)


@pytest.mark.gpu
def test_gpu_features_match_cpu(irmas_shared, prepared, tmp_path):

    device = torch.device("cuda")
    prepare(irmas_shared, tmp_path, "train", FeatureExtractor(DEFAULT, "torch", device), "torch")
    cpu, gpu = dataset.load_features(prepared), dataset.load_features(tmp_path)
    assert gpu.names == cpu.names
    assert (gpu.mel - cpu.mel).abs().max() < 1e-2
    assert (gpu.band == cpu.band).float().mean() > 0.99


def test_clean_mask_option(irmas_shared, prepared, tmp_path, extractor):
    from instrumentd.training.prepare import mask_cleaner

    prepare(irmas_shared, tmp_path, "train", extractor, "torch", batch_size=16, mask_transform=mask_cleaner())
    raw, clean = dataset.load_features(prepared), dataset.load_features(tmp_path)
    assert clean.meta["mask"] == "clean" and raw.meta["mask"] == "pyin"
    assert torch.equal(clean.mask()[:, 0], mask_cleaner()(raw.mask()[:, 0]))
    d = torch.load(tmp_path / "cel" / "[cel][cla]0001__1.pt", weights_only=True)
    assert torch.equal(d["pred_spec"], d["mel"] * d["mask"])
