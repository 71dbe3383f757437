import math

import torch

from instrumentd.training.augment import MEL_FLOOR_DB, MIX_GAIN_DB, blank_masks, mix_pairs, spec_augment, timbre_eq


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


def test_blanked_masks_are_whole_items_in_about_the_share_asked():
    torch.manual_seed(2)
    mask = (torch.rand(4000, 1, 8, 5) < 0.5).float()
    out = blank_masks(mask, 0.3)
    blank = out.sum(dim=(1, 2, 3)) == 0
    assert 0.27 < blank.float().mean() < 0.33
    assert torch.equal(out[~blank], mask[~blank])  # the others untouched
    assert torch.equal(blank_masks(mask, 0.0), mask)


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


def test_mix_pairs_sums_powers_and_splits_the_target_by_power():
    torch.manual_seed(2)
    b = 64
    mel = torch.full((b, 1, 128, 100), MEL_FLOOR_DB)
    mel[:, :, 20, :] = 0.0  # each clip: one loud band, its own
    mel[torch.arange(b), :, 30 + torch.arange(b) % 11, :] = -10.0
    classes = torch.arange(b) % 11
    target = torch.nn.functional.one_hot(classes, 11).float()
    out_mel, out_target = mix_pairs(mel, target, 1.0)
    assert torch.allclose(out_target.sum(1), torch.ones(b))
    mixed = out_target.amax(1) < 1
    assert mixed.float().mean() > 0.7  # every item asked for a partner; only same-class pairs stay apart
    for i in mixed.nonzero().flatten().tolist():
        own = float(out_target[i, classes[i]])
        partner_class = int(torch.topk(out_target[i], 2).indices[1])
        share = 1 - own
        assert 0.5 <= own < 1 and partner_class != classes[i]
        gain_db = 10 * math.log10(share / own)  # the partner's level under the clip, from the target
        assert -MIX_GAIN_DB - 1e-3 <= gain_db <= 1e-3
        # band 20 is 0 dB in both clips: their powers add; renormalised, it is still the maximum
        assert float(out_mel[i, 0, 20].max()) == 0.0
        g = share / own  # the partner's power ratio; band 30 + its class: -10 dB there, the floor here
        expected = 10 * math.log10(0.1 * g + 1e-8) - 10 * math.log10(1 + g)
        assert abs(float(out_mel[i, 0, 30 + partner_class, 0]) - expected) < 1e-3
    assert torch.equal(out_mel[~mixed], mel[~mixed]) and torch.equal(out_target[~mixed], target[~mixed])


def test_mix_pairs_at_rate_zero_changes_nothing():
    mel = -torch.rand(8, 1, 128, 100) * 70
    target = torch.nn.functional.one_hot(torch.arange(8), 11).float()
    out_mel, out_target = mix_pairs(mel, target, 0.0)
    assert torch.equal(out_mel, mel) and torch.equal(out_target, target)
