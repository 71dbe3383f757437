"""Synthetic corpus: reproducible plans, real ranges, SoundFont policy, batch renders equal single renders."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from instrumentd.pipeline.errors import ParameterError
from instrumentd.training import irmas, synth
from instrumentd.training.render import render


def test_plan_is_reproducible_and_grows_without_changing_clips():
    small = synth.plan(2, 3, seed=7)
    assert synth.plan(2, 3, seed=7) == small
    bigger = synth.plan(4, 3, seed=7)
    assert set(small) <= set(bigger)
    assert synth.plan(2, 3, seed=8) != small
    train = [s for s in small if s.split == "train"]
    assert len(train) == 2 * 11 and {s.soundfont for s in train} == {"fluidr3", "timgm6mb"}
    test = [s for s in small if s.split == "test"]
    assert len(test) == 3 * 3  # every composition with every test SoundFont
    assert {s.key for s in test if s.soundfont == "musescore"} == {s.key for s in test if s.soundfont == "fluidr3"}
    assert all(5.0 <= s.seconds <= 20.0 and 1 <= len(s.labels) <= 3 for s in test)


def test_training_names_follow_irmas():
    for s in synth.plan(3, 0, seed=1):
        name = s.path.split("/")[-1]
        m = irmas.TRAIN_NAME.match(name)
        assert m and m["cls"] == s.labels[0] and m["drums"] == ("dru" if s.drums else "nod")


def test_evaluation_soundfont_refused_for_training():
    with pytest.raises(ParameterError, match="'musescore' is reserved for evaluation"):
        synth.plan(1, 0, soundfonts=("fluidr3", "musescore"))
    with pytest.raises(ParameterError, match="unknown SoundFont 'nope'"):
        synth.plan(0, 1, test_soundfonts=("nope",))


@pytest.mark.parametrize("cls", ["cel", "flu", "sax", "vio", "voi"])
def test_melodies_stay_in_the_instrument_range(cls):
    specs = [s for s in synth.plan(20, 0, ("fluidr3",), seed=3) if s.labels == (cls,)]
    assert len(specs) == 20
    for spec in specs:
        melody = synth.compose(spec)[0]
        assert melody.program in synth.PROGRAMS[cls]
        lo, hi = synth.SAX_RANGES[melody.program] if cls == "sax" else synth.RANGES[cls]
        pitches = [n.pitch for n in melody.notes]
        assert pitches and lo <= min(pitches) and max(pitches) <= hi
        assert all(0 <= n.start and n.start + n.duration <= spec.seconds + 1e-9 for n in melody.notes)


def test_composition_levels_put_the_labelled_part_on_top():
    for spec in [s for s in synth.plan(10, 0, ("fluidr3",), seed=0) if s.labels == ("pia",)]:
        tracks = synth.compose(spec)
        melody, others = tracks[0], tracks[1:]
        assert all(melody.volume > t.volume for t in others)


@pytest.mark.slow
def test_batch_render_equals_single_render(tmp_path, fluidsynth_available):
    everything = synth.plan(1, 1, ("timgm6mb",), ("timgm6mb",), seed=2)
    specs = everything[:2] + everything[-1:]  # two training clips and the test clip
    synth.synthesize(tmp_path, specs, processes=1)
    for s in specs:
        alone = render(synth.compose(s), s.soundfont, s.seconds, tempo_bpm=synth.MIDI_TEMPO, gain=synth.RENDER_GAIN)
        written, sr = soundfile.read(tmp_path / s.path, dtype="float32")
        assert sr == 44100 and len(written) == round(s.seconds * sr)
        expected = alone * (np.abs(written).max() / np.abs(alone).max())  # each clip at its own peak level
        # a sample off would cost most of the signal; what remains is 16-bit rounding and the
        # first milliseconds of a channel that the previous clip left in another state
        error_db = 10 * np.log10(np.sum((written - expected) ** 2) / np.sum(expected**2))
        assert error_db < -40
    clips = irmas.training_clips(tmp_path)
    assert {c.soundfont for c in clips} == {"timgm6mb"}  # from synth.csv
    test = irmas.test_clips(tmp_path)
    assert test[0].labels == specs[-1].labels
    assert (tmp_path / specs[-1].path).with_suffix(".txt").read_text().endswith("\t\n")
