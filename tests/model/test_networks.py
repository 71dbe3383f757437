import pytest
import torch

from instrumentd.model.networks import VARIANTS, build, count_parameters
from instrumentd.model.summary import summary_rows
from instrumentd.pipeline.errors import ParameterError

TABLE_2 = {  # module -> parameters, from the paper's Table 2
    "mel_proj": 16_640,
    "mask_proj": 33_024,
    "attention": 263_168,
    "feed_forward": 262_912,
}


def test_cross_attention_has_table_2_parameter_count():
    model = build("cross")
    assert count_parameters(model) == 878_331
    for name, expected in TABLE_2.items():
        assert count_parameters(getattr(model, name)) == expected
    assert count_parameters(model.head) == 137_227  # Table 2 rounds this row to "137.8 K"


def test_table_2_shapes():
    rows = {name.split()[0]: shape for name, shape, _ in summary_rows(build("cross"))}
    assert rows["mel_branch.20"] == (4, 64, 16, 12)
    assert rows["mask_branch.11"] == (4, 128, 16, 12)
    assert rows["mel_proj"] == rows["mask_proj"] == (4, 256, 16, 12)
    assert rows["attention"] == (4, 192, 256)
    assert rows["head.3"] == (4, 11)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("frames", [100, 300])
def test_variants_run_on_both_frame_counts(variant, frames):
    model = build(variant).eval()
    x = torch.randn(3, 1, 128, frames)
    out = model(x, (x > 1).float())
    assert out.shape == (3, 11)
    assert torch.isfinite(out).all()
    assert model.embed(x, x).shape[0] == 3


def test_mask_matters_to_cross_attention_but_not_to_mel_only():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 128, 100)
    m1, m2 = torch.zeros_like(x), (torch.rand_like(x) > 0.9).float()
    cross, mel = build("cross").eval(), build("mel").eval()
    assert not torch.allclose(cross(x, m1), cross(x, m2))
    assert torch.equal(mel(x, m1), mel(x, m2))


def test_unknown_variant():
    with pytest.raises(ParameterError, match="unknown model variant 'nope'"):
        build("nope")
