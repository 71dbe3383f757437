"""Room responses simulated with pyroomacoustics: unit energy, direct sound first, saved once."""

import numpy as np
import pytest

from instrumentd.training import rooms


def test_rooms_are_unit_energy_with_the_direct_sound_first():
    pytest.importorskip("pyroomacoustics")
    irs = rooms.simulate_rooms(3, 16000, seed=4)
    assert irs.shape == (3, int(rooms.IR_SECONDS * 16000)) and irs.dtype == np.float32
    assert (np.abs(irs).argmax(axis=1) == 0).all()
    assert np.sqrt((irs**2).sum(axis=1)) == pytest.approx(1.0, abs=1e-5)
    assert (np.abs(irs[:, 1000:]).sum(axis=1) > 0).all()  # a tail: reflections, not only the direct sound
    assert np.array_equal(irs, rooms.simulate_rooms(3, 16000, seed=4))


def test_rooms_are_saved_beside_the_bank(tmp_path):
    pytest.importorskip("pyroomacoustics")
    first = rooms.load_or_simulate(tmp_path, 2, 8000, seed=1)
    assert (tmp_path / rooms.ROOMS_FILE).is_file()
    assert np.abs(np.load(tmp_path / rooms.ROOMS_FILE) - first).max() < 1e-3  # float16 on disk
    np.save(tmp_path / rooms.ROOMS_FILE, first * 0 + 0.5)  # what is on disk is what is read back
    assert (rooms.load_or_simulate(tmp_path, 2, 8000) == 0.5).all()
