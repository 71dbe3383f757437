"""Expressive playing: vibrato and swells heard through real fluidsynth renders, and performances of
composed stems (reproducible, no bends on struck or keyboard parts, every note starting centred)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from instrumentd.training import expression, stems
from instrumentd.training.midi import PITCH_BEND, Note, Track
from instrumentd.training.render import render
from instrumentd.training.synth import MIDI_TEMPO, RENDER_GAIN

SR = 44100
HOP = 128  # f0 frames of 2.9 ms


def _cents(audio: np.ndarray) -> np.ndarray:
    """f0 of a steady monophonic note, cents about its mean, one value per ``HOP`` samples (YIN with
    parabolic interpolation: pYIN's 10-cent pitch grid is too coarse for a 10-cent vibrato)."""
    f0 = librosa.yin(audio, fmin=200, fmax=1500, sr=SR, frame_length=1024, hop_length=HOP)
    cents = 1200 * np.log2(f0 / np.median(f0))
    return cents - cents.mean()


def _rate_and_depth(cents: np.ndarray) -> tuple[float, float]:
    """The strongest modulation frequency (hz) and a sine's peak deviation (cents) of ``cents``."""
    spectrum = np.abs(np.fft.rfft(cents * np.hanning(len(cents)), 16384))
    rate = np.fft.rfftfreq(16384, HOP / SR)[int(np.argmax(spectrum[1:])) + 1]
    return float(rate), float(np.sqrt(2) * cents.std())


@pytest.mark.parametrize("rate_hz, cents", [(4.5, 12.0), (7.0, 40.0)])
def test_vibrato_modulates_the_pitch_at_its_rate_and_depth(timgm6mb, rate_hz, cents):
    note = Note(79, 0.0, 3.0)  # flute, G5
    bends = expression.vibrato_bends(0.3, 3.0, rate_hz, cents)
    plain = render([Track(73, 0, [note])], timgm6mb, 3.0, SR, MIDI_TEMPO, RENDER_GAIN)
    vibrato = render([Track(73, 0, [note], controls=bends)], timgm6mb, 3.0, SR, MIDI_TEMPO, RENDER_GAIN)
    steady = slice(int(0.8 * SR), int(2.8 * SR))  # after the vibrato's onset and fade-in
    measured_rate, measured_depth = _rate_and_depth(_cents(vibrato[steady]))
    assert measured_rate == pytest.approx(rate_hz, abs=0.25)
    assert measured_depth == pytest.approx(cents, rel=0.2)
    assert _rate_and_depth(_cents(plain[steady]))[1] < 8  # the same note without bends is flat


def test_expression_swell_raises_the_level(timgm6mb):
    note = Note(60, 0.0, 3.0)  # organ, C4: a steady level when held
    swell = expression.expression_events(np.array([0.0, 3.0]), np.array([60.0, 127.0]), 0.0, 3.0)
    assert len(swell) <= 3.0 * expression.EXPRESSION_EVENTS_HZ

    def rise_db(tracks):
        audio = render(tracks, timgm6mb, 3.0, SR, MIDI_TEMPO, RENDER_GAIN)
        first, last = audio[int(0.3 * SR) : int(0.8 * SR)], audio[int(2.4 * SR) : int(2.9 * SR)]
        return 10 * np.log10(np.mean(last**2) / np.mean(first**2))

    assert rise_db([Track(19, 0, [note], controls=swell)]) > 6  # GM: 40 dB * log10(120 / 69) = 9.6 dB
    assert abs(rise_db([Track(19, 0, [note])])) < 2


def _performed(classes, banks=("timgm6mb",), per_class=6, seed=1):
    return [(s, stems.compose(s)[0]) for s in stems.plan(per_class, banks, seed=seed) if s.cls in classes]


def test_the_same_spec_gives_the_same_performance(timgm6mb):
    (spec, track), (other, _) = _performed({"vio"}, per_class=2)
    again = stems.compose(spec)[0]
    assert track.controls == again.controls and track.notes == again.notes
    assert any(c.number == PITCH_BEND for c in track.controls)
    assert stems.compose(other)[0].controls != track.controls


def test_struck_and_keyboard_parts_get_no_pitch_bends(timgm6mb):
    for spec, track in _performed({"pia", "org", "gac", "gel"}):
        assert not any(c.number == PITCH_BEND for c in track.controls), spec.path
        if spec.cls != "org":  # their dynamics are in the velocities
            assert track.controls == [], spec.path
    bent = [any(c.number == PITCH_BEND for c in t.controls) for _, t in _performed(expression.VIBRATO_CLASSES)]
    assert sum(bent) >= len(bent) // 2


def test_accompaniment_gets_swells_on_sustained_programs_only(timgm6mb):
    tracks = [t for s in stems.plan(8, ("timgm6mb",), seed=2) if s.role == "acc" for t in stems.compose(s)]
    for t in tracks:
        assert not any(c.number == PITCH_BEND for c in t.controls)
        assert bool(t.controls) == (t.program in stems.SWELLING_PROGRAMS), t.program
    assert any(t.controls for t in tracks) and not all(t.controls for t in tracks)


def test_every_note_starts_with_the_pitch_centred(timgm6mb):
    for spec, track in _performed(expression.VIBRATO_CLASSES):
        bends = [c for c in track.controls if c.number == PITCH_BEND]
        for n in track.notes:
            before = [c.value for c in bends if c.time <= n.start]
            assert not before or before[-1] == 0, (spec.path, n)
        # BEND_EVENTS_HZ a second at most, and one centring bend a note: the MIDI file stays small
        assert len(bends) <= expression.BEND_EVENTS_HZ * spec.seconds + len(track.notes)


def test_humanised_onsets_move_a_little_and_chords_together():
    notes = [Note(60, 1.0, 0.5), Note(64, 1.0, 0.5), Note(62, 1.5, 0.5), Note(65, 0.0, 0.5), Note(67, 3.9, 0.1)]
    moved = expression.humanise(np.random.default_rng(0), notes, 0.0, 4.0)
    assert moved[0].start == moved[1].start != 1.0
    for before, after in zip(notes, moved):
        assert abs(after.start - before.start) <= expression.TIMING_MAX_MS / 1000 + 1e-9
        assert 0.0 <= after.start and after.start + after.duration <= 4.0 + 1e-9


def test_sampler_stems_are_left_to_the_sampler():
    sampler_banks = [name for name, bank in stems.BANKS.items() if bank.engine == "sampler"]
    if not sampler_banks:
        pytest.skip("no sampler bank defined")
    name = sampler_banks[0]
    cls = stems.sampler.SAMPLE_PACKAGES[name].cls
    spec = stems.StemSpec(f"pred/{name}/{cls}/0.ogg", "pred", cls, None, name, 4.0, (0, 0, 0, 0))
    assert stems.compose(spec)[0].controls == []


def _glide_frames(audio: np.ndarray) -> int:
    """Frames (5 ms) between 1 and 4 semitones above G4 within 0.25 s of the onset at 1 s: a slide
    from G4 to C5 passes through them, a plain change of note jumps over them."""
    f0 = librosa.yin(audio[int(0.95 * SR) : int(1.25 * SR)], fmin=200, fmax=1500, sr=SR, frame_length=2048,
                     hop_length=220)
    semitones = 12 * np.log2(f0 / librosa.midi_to_hz(67))
    return int(np.sum((semitones > 1) & (semitones < 4)))


def test_a_slurred_slide_glides_between_the_notes(timgm6mb):
    notes = [Note(67, 0.0, 1.03), Note(72, 1.0, 1.0)]  # violin, G4 held into C5
    slid = render([Track(40, 0, notes, controls=expression.slide_controls(1.0, 120))], timgm6mb, 2.0, SR,
                  MIDI_TEMPO, RENDER_GAIN)
    plain = render([Track(40, 0, notes)], timgm6mb, 2.0, SR, MIDI_TEMPO, RENDER_GAIN)
    assert _glide_frames(slid) >= 8 and _glide_frames(plain) <= 2


def test_slurs_hold_notes_into_the_next_one():
    notes = [Note(60, 0.0, 0.48), Note(62, 0.5, 0.3), Note(64, 1.5, 0.5)]  # the last follows a rest
    outcomes = set()
    for seed in range(20):
        held, slurred = expression.legato(np.random.default_rng(seed), notes)
        assert set(slurred) <= {0.5}
        assert (held[0].start + held[0].duration > 0.5) == (0.5 in slurred)
        assert held[1:] == notes[1:]
        outcomes.add(bool(slurred))
    assert outcomes == {True, False}  # the share of slurs is drawn for each stem


def test_accents_fall_on_the_beat_grid():
    beat = 0.5
    notes = [Note(60, 0.1 + k * beat / 2, 0.2, 80) for k in range(16)]  # eighth notes from 0.1 s
    accented = set()
    for seed in range(10):
        for before, after in zip(notes, expression.accent(np.random.default_rng(seed), notes, beat)):
            assert after.start == before.start and after.velocity >= before.velocity
            if after.velocity > before.velocity:
                accented.add(round((before.start - 0.1) / beat, 6))
    assert accented and all(k == int(k) for k in accented)  # on beats, never on the off-beat eighths
