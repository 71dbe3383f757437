"""STK physical models: SKINI scores from tracks, real stk-demo renders at their pitch, the stk bank's
solo-only plans."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from instrumentd.model.recognizer import DEFAULT_CHECKPOINT
from instrumentd.pipeline.errors import ParameterError
from instrumentd.training import physical, stems
from instrumentd.training.midi import PITCH_BEND, Control, Note, Track
from instrumentd.training.render import RenderError

SR = 44100


def _need_stk():
    if not physical.installed():
        pytest.skip("stk-demo not installed (make system-deps)")


def _score(text):
    """``[(absolute seconds, type, data...)]`` of a SKINI score with delta times."""
    out, now = [], 0.0
    for line in text.splitlines():
        kind, delta, _channel, *data = line.split()
        now += float(delta)
        out.append((round(now, 6), kind, *map(float, data)))
    return out


def test_a_track_becomes_a_skini_score_at_its_own_time():
    track = Track(42, 0, [Note(45, 10.5, 1.0, 90), Note(47, 11.5, 0.5, 70)], start=10.0, bend_range=2,
                  controls=[Control(10.6, 11, 100), Control(10.7, PITCH_BEND, 8191), Control(10.8, PITCH_BEND, -4096),
                            Control(10.9, 65, 127), Control(11.0, 7, 50)])
    score = _score(physical.skini(track, np.random.default_rng(0)))
    assert score[0] == (0.0, "ControlChange", physical.REVERB_MIX, 0.0)  # stk-demo's reverb off
    timbre = {int(e[2]): e[3] for e in score if e[1] == "ControlChange" and e[0] == 0.0 and e[2] != physical.REVERB_MIX}
    assert set(timbre) == set(physical.TIMBRE["Bowed"])
    for number, value in timbre.items():
        low, high = physical.TIMBRE["Bowed"][number]
        assert low <= value <= high
    rest = [e for e in score if e[0] > 0.0]
    assert rest[0] == (0.5, "NoteOn", 45.0, 90.0)
    assert rest[1] == (0.6, "ControlChange", physical.PRESSURE, 100.0)  # expression drives the bow
    assert rest[2][:2] == (0.7, "PitchBend") and rest[2][2] == pytest.approx(8192 + 8191 / 8192 * 2 / 12 * 8192, abs=1e-3)
    assert rest[3][:2] == (0.8, "PitchBend") and rest[3][2] == pytest.approx(8192 - 1 / 12 * 8192, abs=1e-3)
    assert [e[1:] for e in rest[4:]] == [("NoteOff", 45.0, 64.0), ("NoteOn", 47.0, 70.0), ("NoteOff", 47.0, 64.0)]
    assert [e[0] for e in rest[4:]] == [1.5, 1.5, 2.0]  # the off before the next on: one voice, slurred
    # portamento (65) and volume (7) mean other things to STK's instruments: left out


def test_the_stk_bank_plays_only_the_classes_it_has_models_for():
    _need_stk()
    assert "stk" in stems.installed_banks()
    with pytest.raises(ParameterError, match="none of the banks stk plays class 'gac'"):
        stems.plan(1, ("stk",))
    specs = stems.plan(3, ("stk",), seed=4, classes=("cel", "vio"))
    assert [s.cls for s in specs] == ["cel"] * 3 + ["vio"] * 3 and {s.role for s in specs} == {"pred"}
    if "timgm6mb" in stems.installed_banks():  # a whole bank needs a bank that plays every class
        whole = [s for s in stems.plan(3, ("stk", "timgm6mb"), seed=4) if s.cls in ("cel", "vio") and s.bank == "stk"]
        assert whole and {s.key for s in whole} <= {s.key for s in specs}  # the keys they have in the whole bank
    with pytest.raises(ParameterError, match="unknown class 'cello'"):
        stems.plan(1, ("stk",), classes=("cello",))


@pytest.mark.parametrize("cls", ["cel", "cla", "org"])  # a bowed string, a reed, the FM organ
def test_held_notes_sound_at_their_pitch(cls, tmp_path):
    """Real stk-demo renders of held-note stems (timbre drawn, vibrato bends sent): pYIN hears the
    drawn note in most of them; a physical model may overblow or undershoot an octave now and then."""
    _need_stk()
    from instrumentd.pipeline.pitch import librosa_pyin

    specs = stems.plan(4, ("stk",), seed=3, seconds=2.0, fmt="flac", note_share=1.0, classes=(cls,))
    stems.render_stems(specs, tmp_path)
    in_tune = 0
    for spec in specs:
        (track,) = stems.compose(spec)
        audio, _ = soundfile.read(tmp_path / spec.path, dtype="float32")
        f0 = librosa_pyin(audio[None])[0]
        heard = 69 + 12 * np.log2(np.nanmedian(f0) / 440.0)
        in_tune += abs(heard - track.notes[0].pitch) < 0.7
    assert in_tune >= 3


def test_a_model_that_stays_silent_is_refused_in_one_line():
    _need_stk()
    physical.render_stk([Track(42, 0, [])], 1.0, SR, np.random.default_rng(0))  # no notes: silence is right
    with pytest.raises(RenderError, match="STK plays no instrument for General MIDI program 0"):
        physical.render_stk([Track(0, 0, [Note(60, 0.0, 0.5)])], 1.0, SR, np.random.default_rng(0))
    with pytest.raises(RenderError, match=r"stk-demo Bowed stayed silent in 4 timbres \(notes \[60\]\)"):
        physical.render_stk([Track(42, 0, [Note(60, 0.0, 0.5, velocity=0)])], 1.0, SR, np.random.default_rng(0))


def test_synth_stems_renders_a_few_classes_from_the_stk_bank_and_adds_them_to_a_bank(tmp_path):
    _need_stk()
    cmd = [sys.executable, "-m", "instrumentd", "synth-stems", str(tmp_path / "bank"), "--banks", "stk",
           "--classes", "cel,flu", "--per-class", "2", "--seconds", "1.5", "--processes", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "4 stems" in proc.stdout
    assert sorted(p.parent.name for p in (tmp_path / "bank" / "pred" / "stk").rglob("*.ogg")) == ["cel"] * 2 + ["flu"] * 2
    bad = subprocess.run(cmd[:-6] + ["--classes", "cel,drums", "--per-class", "1"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode != 0 and "unknown class 'drums'" in bad.stderr and "Traceback" not in bad.stderr
    add = cmd[:-6] + ["--classes", "vio", "--per-class", "1", "--seconds", "1.5", "--add"]
    proc = subprocess.run(add, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    entries = json.loads((tmp_path / "bank" / "index.json").read_text())["stems"]
    assert sorted(e["cls"] for e in entries) == ["cel", "cel", "flu", "flu", "vio"]  # added, the others kept
    assert all((tmp_path / "bank" / e["path"]).is_file() for e in entries)
    add[4] = str(tmp_path / "new")
    bad = subprocess.run(add, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "no index.json to add stems to" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "new").exists()


def test_evaluate_scores_a_stem_banks_solo_stems_with_a_row_per_bank(tmp_path):
    """`instrumentd evaluate CKPT BANK`: each solo stem is a clip labelled with its class, its bank as
    its row (the default checkpoint on real stk renders; what it answers is not checked, only that
    every stem was scored under its class and bank)."""
    _need_stk()
    from instrumentd.model.recognizer import Recognizer
    from instrumentd.training.evaluate import evaluate_path, report

    specs = stems.plan(2, ("stk",), seed=8, seconds=3.5, classes=("cel", "org"))
    stems.synthesize_stems(tmp_path / "bank", specs, processes=1)
    scores, features = evaluate_path(Recognizer.from_checkpoint(DEFAULT_CHECKPOINT, "cpu"), tmp_path / "bank", None)
    rep = report(scores)
    assert features is None and rep["by_soundfont"]["stk"]["clips"] == 4
    assert sorted((c["clip"], c["soundfont"], tuple(c["labels"])) for c in rep["predictions"]) == sorted(
        (s.path, "stk", (s.cls,)) for s in specs)
