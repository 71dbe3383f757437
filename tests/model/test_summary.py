"""Table-2 summary rows: output shapes from a real forward pass, parameters that add up to the network's."""

import pytest

from instrumentd.model.networks import VARIANTS, build, count_parameters
from instrumentd.model.summary import summary_rows


def test_the_cross_attention_rows_are_table_2s():
    rows = summary_rows(build("cross"))
    assert rows[0] == ("mel_branch.0 Conv2d", (4, 16, 128, 100), 160)  # 3 x 3 x 16 + 16
    assert rows[-1] == ("head.3 Linear", (4, 11), 5643)  # 512 x 11 + 11
    assert any(shape == (4, 192, 256) for _, shape, _ in rows)  # the 192 tokens of 256
    assert not any("ReLU" in name or "Dropout" in name for name, _, _ in rows)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_rows_add_up_to_the_networks_parameters(variant):
    model = build(variant)
    assert sum(params for _, _, params in summary_rows(model)) == count_parameters(model)


def test_batch_and_frames_change_the_shapes_and_the_mode_is_kept():
    model = build("cross").train()
    rows = summary_rows(model, batch=2, frames=300)
    assert rows[0][1] == (2, 16, 128, 300) and rows[-1][1] == (2, 11)
    assert model.training
    assert summary_rows(model, batch=2, frames=300) == rows  # hooks left behind would record rows twice
