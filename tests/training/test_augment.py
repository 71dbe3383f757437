import torch

from instrumentd.training.augment import MEL_FLOOR_DB, spec_augment, timbre_eq


def test_stripes_hit_mel_and_mask_alike_and_keep_shapes():
    torch.manual_seed(0)
    mel = -torch.rand(8, 1, 128, 100) * 70 - 1  # strictly above the floor
    mask = torch.zeros_like(mel)
    mask[:, :, 40, :] = 1
    out_mel, out_mask = spec_augment(mel, mask)
    assert out_mel.shape == mel.shape and out_mask.shape == mask.shape
    hidden = out_mel == MEL_FLOOR_DB
    assert hidden.any()
    assert not out_mask[hidden].any()  # the mask is zero wherever the mel was hidden
    # the voiced band survives wherever it was not hidden: the same shift moved both inputs
    assert (out_mask[:, :, 40, :] + hidden[:, :, 40, :].float()).min() >= 1
    assert out_mask.sum() < mask.sum()


def test_inputs_are_not_modified():
    mel = -torch.rand(2, 1, 128, 100) * 70 - 1
    mask = torch.ones_like(mel)
    before = mel.clone(), mask.clone()
    spec_augment(mel, mask)
    assert torch.equal(mel, before[0]) and torch.equal(mask, before[1])


def test_timbre_eq_reshapes_the_spectrum_but_keeps_silence_and_the_db_reference():
    torch.manual_seed(1)
    mel = -torch.rand(4, 1, 128, 100) * 60 - 5
    mel[:, :, :10, :] = MEL_FLOOR_DB  # silent low bands
    mel[:, :, 64, 50] = 0.0
    out = timbre_eq(mel)
    assert out.shape == mel.shape and not torch.equal(out, mel)
    assert torch.equal(out[:, :, :10], mel[:, :, :10])  # silence stays at the floor
    assert torch.allclose(out.amax(dim=(2, 3)), torch.zeros(4, 1))  # the loudest cell is 0 dB again
    assert out.min() >= MEL_FLOOR_DB
    # one smooth curve per clip: within a band, every frame moved by the same amount (away from the clip)
    moved = (out - mel)[:, :, 10:]
    unclipped = out[:, :, 10:] > MEL_FLOOR_DB
    spread = torch.where(unclipped, moved, torch.nan)
    assert torch.nanmean((spread - spread.nanmean(dim=3, keepdim=True)).abs()) < 1e-4
    assert (moved.amax(dim=(1, 2, 3)) - moved.amin(dim=(1, 2, 3)) > 0.5).all()  # the curve is not flat
