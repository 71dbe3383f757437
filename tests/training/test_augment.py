import torch

from instrumentd.training.augment import MEL_FLOOR_DB, spec_augment


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
