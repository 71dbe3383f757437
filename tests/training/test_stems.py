"""Stem bank: reproducible plans, bank choice per class, and a real tiny render (fluidsynth, espeak-ng, numpy)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import soundfile

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import ParameterError
from instrumentd.training import stems
from instrumentd.training.expression import VIBRATO_CLASSES
from instrumentd.training.midi import PITCH_BEND
from instrumentd.training.render import RenderError, find_soundfont
from instrumentd.training.synth import BASS_PROGRAMS, PROGRAMS, RANGES, SAX_RANGES


def _need_timgm6mb():
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (make system-deps)")
    try:
        find_soundfont("timgm6mb")
    except RenderError:
        pytest.skip("TimGM6mb SoundFont not installed (make system-deps)")


def test_plan_is_reproducible_and_grows_without_changing_stems():
    _need_timgm6mb()
    small = stems.plan(2, ("timgm6mb",), seed=3)
    assert stems.plan(2, ("timgm6mb",), seed=3) == small
    assert set(small) <= set(stems.plan(4, ("timgm6mb",), seed=3))
    assert {s.key for s in stems.plan(2, ("timgm6mb",), seed=4)}.isdisjoint({s.key for s in small})
    by_role = {r: [s for s in small if s.role == r] for r in stems.ROLES}
    assert len(by_role["pred"]) == 2 * len(CLASSES) and {s.cls for s in by_role["pred"]} == set(CLASSES)
    assert len(by_role["acc"]) == 2 and len(by_role["drums"]) == 1
    assert {s.kind for s in by_role["none"]} == set(stems.NONE_KINDS)
    assert len({s.path for s in small}) == len(small)


def test_banks_are_taken_in_turn_and_only_for_classes_they_play():
    installed = stems.installed_banks()
    if len(installed) < 2:
        pytest.skip("needs two installed sample banks")
    specs = stems.plan(len(installed), installed, seed=0)
    for cls in CLASSES:
        banks = [s.bank for s in specs if s.cls == cls]
        assert len(set(banks)) >= min(2, len(banks))
        for s in specs:
            if s.cls == cls and s.bank == stems.SUNG:
                assert cls == "voi"
            elif s.cls == cls:
                presets = stems.BANKS[s.bank].presets()
                assert any((0, p) in presets for p in PROGRAMS[cls])  # the bank plays one of the class's programs
    if stems.SUNG in installed:  # mostly sung voices, a few General MIDI ones
        voi = [s.bank for s in stems.plan(16, installed, seed=0) if s.cls == "voi"]
        assert voi.count(stems.SUNG) == 14


def test_bad_arguments_are_refused():
    with pytest.raises(ParameterError, match="unknown bank 'nope'"):
        stems.plan(1, ("nope",))
    with pytest.raises(ParameterError, match="--per-class must be >= 0"):
        stems.plan(-1, ())
    with pytest.raises(ParameterError, match="at least 1 s"):
        stems.plan(1, (), seconds=0.5)
    with pytest.raises(ParameterError, match="unknown format 'mp3'"):
        stems.plan(1, (), fmt="mp3")


def test_a_share_of_the_stems_goes_through_a_broadcast_codec_drawn_by_its_key():
    _need_timgm6mb()
    assert all(s.codec is None for s in stems.plan(4, ("timgm6mb",), seed=2))
    half = stems.plan(4, ("timgm6mb",), seed=2, codec_share=0.5)
    assert half == stems.plan(4, ("timgm6mb",), seed=2, codec_share=0.5)
    coded = [s for s in half if s.codec]
    assert 0.2 < len(coded) / len(half) < 0.8
    assert {s.codec.split(":")[0] for s in coded} == {"mp3", "aac", "opus"}
    assert all(s.entry()["codec"] == s.codec for s in coded)
    assert "codec" not in next(s for s in half if not s.codec).entry()
    assert all(s.codec for s in stems.plan(4, ("timgm6mb",), seed=2, codec_share=1.0))
    with pytest.raises(ParameterError, match="--codecs must be a share"):
        stems.plan(1, ("timgm6mb",), codec_share=1.5)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_a_stem_through_mp3_at_48k_loses_its_top_octave_and_keeps_its_peak(tmp_path):
    """A white-noise stem rendered as it is and through MP3 at 48 kbit/s: the same key, the same noise;
    the coded one has next to nothing above 16 kHz, and both are normalised to -3 dBFS."""
    spec = stems.StemSpec("none/noise/00000.flac", "none", None, "noise", "numpy", 2.0, (0, 3, 1, 0))
    plain, coded = tmp_path / "plain", tmp_path / "coded"
    stems.render_stems([spec], plain)
    stems.render_stems([dataclasses.replace(spec, codec="mp3:48")], coded)
    high = []
    for folder in (plain, coded):
        audio, _ = soundfile.read(folder / spec.path, dtype="float32")
        assert abs(20 * np.log10(np.abs(audio).max()) + 3) < 0.1
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        high.append(spectrum[int(16500 * len(audio) / 44100):].sum() / spectrum.sum())
    assert high[1] < high[0] / 100


@pytest.mark.parametrize("cls", CLASSES)
def test_solo_parts_play_the_class_in_its_range(cls):
    _need_timgm6mb()
    for spec in [s for s in stems.plan(6, ("timgm6mb",), seed=1) if s.cls == cls]:
        (track,) = stems.compose(spec)
        assert track.program in PROGRAMS[cls]
        lo, hi = SAX_RANGES[track.program] if cls == "sax" else RANGES[cls]
        assert track.notes and all(lo <= n.pitch <= hi for n in track.notes)
        assert all(0 <= n.start and n.start + n.duration <= spec.seconds + 1e-9 for n in track.notes)


def test_solo_parts_reach_the_low_end_of_the_range():
    """Real recordings often sit at an instrument's low end (three of real-dev's four cello clips hold a
    D2, MIDI 38): the lowest fifth of a class's range gets at least a tenth of its solo notes (a
    melody's register inside the range gave it 5-7 %)."""
    _need_timgm6mb()
    for cls in ("cel", "vio", "flu", "tru"):
        lo, hi = RANGES[cls]
        pitches = np.array([n.pitch for s in stems.plan(40, ("timgm6mb",), seed=4) if s.cls == cls
                            for track in stems.compose(s) for n in track.notes])
        assert (pitches < lo + (hi - lo) / 5).mean() > 0.1, cls


def test_a_share_of_the_solo_stems_is_one_held_note_anywhere_in_the_range():
    """Sample libraries and teaching sets record an instrument one note at a time, over its whole
    range (real-dev's cellos hold a D2): ``note_share`` of the solo stems are one such note, drawn by
    the stem's key, its pitch spread evenly from the range's lowest note to its highest."""
    _need_timgm6mb()
    assert all(s.kind is None for s in stems.plan(4, ("timgm6mb",), seed=2) if s.role == "pred")
    plan = stems.plan(60, ("timgm6mb",), seed=2, note_share=0.5)
    assert plan == stems.plan(60, ("timgm6mb",), seed=2, note_share=0.5)
    solo = [s for s in plan if s.role == "pred"]
    held = [s for s in solo if s.kind == "note"]
    assert 0.4 < len(held) / len(solo) < 0.6
    assert all(s.entry()["kind"] == "note" for s in held)
    cello = []
    for spec in held:
        (track,) = stems.compose(spec)
        (note,) = track.notes
        lo, hi = SAX_RANGES[track.program] if spec.cls == "sax" else RANGES[spec.cls]
        assert lo <= note.pitch <= hi and 0 <= note.start and note.start + note.duration <= spec.seconds + 1e-9
        assert note.duration >= 0.5
        cello += [note.pitch] if spec.cls == "cel" else []
    lo, hi = RANGES["cel"]
    assert len(cello) > 15 and min(cello) < lo + 6 and max(cello) > hi - 6  # both ends of the range, not its middle
    with pytest.raises(ParameterError, match="--notes must be a share"):
        stems.plan(1, ("timgm6mb",), note_share=-0.1)


def test_a_share_of_the_accompaniments_has_a_bass_line_and_the_rest_of_each_is_the_same():
    """``bass_share`` decides, by each accompaniment's key, whether a bass line plays under its chords;
    the chords are the same either way, and the default share keeps a bank's stems as they were."""
    _need_timgm6mb()
    basses = set(BASS_PROGRAMS)
    default = [s for s in stems.plan(60, ("timgm6mb",), seed=5) if s.role == "acc"]
    none = [s for s in stems.plan(60, ("timgm6mb",), seed=5, bass_share=0.0) if s.role == "acc"]
    every = [s for s in stems.plan(60, ("timgm6mb",), seed=5, bass_share=1.0) if s.role == "acc"]
    with_bass = [any(t.program in basses for t in stems.compose(s)) for s in default]
    assert 0.55 < np.mean(with_bass) < 0.85 and "bass_share" not in default[0].entry()
    assert not any(t.program in basses for s in none for t in stems.compose(s))
    assert all(any(t.program in basses for t in stems.compose(s)) for s in every)
    for a, b in zip(default, none):
        chords = [t for t in stems.compose(a) if t.program not in basses]
        assert [(t.program, t.notes) for t in chords] == [(t.program, t.notes) for t in stems.compose(b)]
    assert none[0].entry()["bass_share"] == 0.0
    with pytest.raises(ParameterError, match="--acc-bass must be a share"):
        stems.plan(1, ("timgm6mb",), bass_share=1.5)


def test_a_share_of_the_sustained_solo_stems_is_played_straight():
    """``straight_share`` of the solo stems of sustained classes, drawn by each stem's key, keep their
    performance (notes, dynamics) without its vibrato's pitch bends; other classes always play as they
    did, and the default share changes no stem."""
    _need_timgm6mb()
    default = [s for s in stems.plan(40, ("timgm6mb",), seed=6) if s.role == "pred"]
    half = [s for s in stems.plan(40, ("timgm6mb",), seed=6, straight_share=0.5) if s.role == "pred"]
    assert all(s.vibrato and "vibrato" not in s.entry() for s in default)
    straight = [s for s in half if not s.vibrato]
    sustained = [s for s in half if s.cls in VIBRATO_CLASSES]
    assert 0.35 < len(straight) / len(sustained) < 0.65 and all(s.cls in VIBRATO_CLASSES for s in straight)
    for a, b in zip(default, half):
        if b.vibrato:
            assert a == b
            continue
        (played,), (held,) = stems.compose(a), stems.compose(b)
        assert held.notes == played.notes and not held.vibrato and b.entry()["vibrato"] is False
        assert [c for c in played.controls if c.number != PITCH_BEND] == held.controls
        assert not any(c.number == PITCH_BEND for c in held.controls)
    assert any(c.number == PITCH_BEND for s in default if s.cls == "vio" for c in stems.compose(s)[0].controls)
    with pytest.raises(ParameterError, match="--straight must be a share"):
        stems.plan(1, ("timgm6mb",), straight_share=2.0)


def test_a_held_cello_note_renders_at_its_pitch(tmp_path):
    """A real render (fluidsynth, TimGM6mb) of a held-note cello stem: pYIN hears the note that was drawn."""
    _need_timgm6mb()
    from instrumentd.pipeline.pitch import librosa_pyin

    spec = next(s for s in stems.plan(40, ("timgm6mb",), seed=3, seconds=3.0, fmt="flac", note_share=1.0)
                if s.cls == "cel")
    (track,) = stems.compose(spec)
    stems.render_stems([spec], tmp_path)
    audio, _ = soundfile.read(tmp_path / spec.path, dtype="float32")
    f0 = librosa_pyin(audio[None])[0]
    heard = 69 + 12 * np.log2(np.nanmedian(f0) / 440.0)
    assert abs(heard - track.notes[0].pitch) < 0.5


@pytest.mark.slow
def test_tiny_bank_renders_every_role(tmp_path):
    _need_timgm6mb()
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (make system-deps)")
    banks = ("timgm6mb", stems.SUNG) if stems.SUNG in stems.installed_banks() else ("timgm6mb",)
    specs = stems.plan(1, banks, seed=5, seconds=2.0, fmt="flac")
    index = stems.synthesize_stems(tmp_path, specs, processes=2)
    data = json.loads(index.read_text())
    assert data["sample_rate"] == 44100 and len(data["stems"]) == len(specs)
    for entry in data["stems"]:
        assert set(entry) == {"path", "role", "cls", "bank", "kind", "seconds"}
        audio, sr = soundfile.read(tmp_path / entry["path"], dtype="float32")
        assert sr == 44100 and audio.shape == (88200,), entry["path"]
        peak = np.abs(audio).max()
        if entry["kind"] == "silence":
            assert peak < 0.01
        else:  # normalised to -3 dBFS and sounding for a good part of the stem
            assert abs(20 * np.log10(peak) + 3) < 0.1, entry["path"]
            assert np.mean(np.abs(audio) > 0.01 * peak) > 0.2, entry["path"]
    # the same seed renders the same audio, also when the stem is rendered in another batch
    again = tmp_path / "again"
    vio = next(s for s in specs if s.cls == "vio")
    stems.synthesize_stems(again, [vio], processes=1)
    first, _ = soundfile.read(tmp_path / vio.path, dtype="float32")
    second, _ = soundfile.read(again / vio.path, dtype="float32")
    assert np.sum((first - second) ** 2) / np.sum(first**2) < 1e-4
