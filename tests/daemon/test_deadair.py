"""Dead air: silence for silence_s seconds is announced once, sound once when the level returns."""

import numpy as np
import pytest

from instrumentd.daemon.deadair import DeadAir, WindowLevels

SR = 1000  # hz: 100-sample frames


class Stream:
    """Reads of a stream measured as the worker does: its frames' energies, then dead air on them."""

    def __init__(self):
        self.levels = WindowLevels(hop_length=100, frames_kept=50)
        self.deadair = DeadAir(-60.0, 1.0, SR)
        self.pos = 0

    def read(self, audio: np.ndarray) -> list[tuple[str, str]]:
        energy, count = self.levels.push(np.square(audio), self.pos)
        self.pos += len(audio)
        return self.deadair.push(energy, count)


def test_silence_is_announced_after_silence_s_and_sound_when_a_frame_is_loud_again():
    s = Stream()
    tone = 0.1 * np.sin(np.arange(500) / 3).astype(np.float32)  # about -23 dBFS
    quiet = np.full(400, 1e-4, np.float32)  # -80 dBFS
    assert s.read(tone) == []
    assert s.read(quiet) == [] and s.read(quiet) == []  # 0.8 s of silence
    assert s.read(quiet) == [("silent", "level under -60 dBFS for 1.2 s")]
    assert s.read(quiet) == []  # announced once
    (state, reason), = s.read(np.concatenate([quiet[:200], tone]))
    assert state == "sound" and reason.startswith("level -23.") and reason.endswith("after 1.8 s of silence")
    assert s.read(tone) == []


def test_a_frame_cut_by_reads_counts_as_frames_of_their_own():
    """A read that ends inside a frame: the rest of that frame, in the next read, is measured on its
    own, so the silence counts from the last loud sample."""
    s = Stream()
    assert s.read(np.full(50, 0.5, np.float32)) == []  # half of frame 0
    assert s.read(np.zeros(900, np.float32)) == [] and s.deadair.quiet_s == 0.9
    assert s.read(np.zeros(200, np.float32)) == [("silent", "level under -60 dBFS for 1.1 s")]


def test_a_short_pause_or_a_gap_in_the_audio_is_not_dead_air():
    s = Stream()
    quiet = np.zeros(700, np.float32)
    assert s.read(quiet) == []
    s.deadair.restart()  # the source came back after an outage: the silence before it does not run on
    assert s.read(quiet) == []
    assert s.read(np.concatenate([np.full(100, 0.5, np.float32), quiet])) == []
    assert s.deadair.quiet_s == 0.7


def test_window_levels_measure_exactly_the_frames_asked():
    levels = WindowLevels(hop_length=100, frames_kept=50)
    loud = np.full(1000, 0.5, np.float32)  # frames 0-9 at -6 dBFS
    levels.push(np.square(np.concatenate([loud, np.zeros(1000, np.float32)])), 0)  # frames 10-19 silent, one read
    assert levels.level_db(0, 10) == pytest.approx(20 * np.log10(0.5))
    assert levels.level_db(10, 10) == -120.0
    assert levels.level_db(5, 10) == pytest.approx(20 * np.log10(0.5) - 10 * np.log10(2))
    levels.push(np.square(np.full(150, 0.1, np.float32)), 2050)  # a read that starts and ends mid-frame, after a gap
    assert levels.level_db(20, 3) == pytest.approx(-20.0)  # frame 20 unheard: counted by samples heard
    levels.push(np.zeros(10_000, np.float32), 2200)  # 100 frames later: the first frames are gone
    assert levels.level_db(0, 10) == -120.0 and levels.newest == 121


def test_window_levels_equal_the_level_of_every_sample_heard_whatever_the_reads():
    """Reads of any size, some past the ring's reach, some after gaps: each window's level is that of the
    samples heard in its frames, computed here from the whole signal at once."""
    rng = np.random.default_rng(3)
    hop, kept = 50, 40
    levels = WindowLevels(hop_length=hop, frames_kept=kept)
    heard = np.zeros(200_000)  # squares of the samples heard, by grid index
    seen = np.zeros(200_000, bool)
    pos = 0
    for _ in range(60):
        pos += int(rng.choice([0, 0, 0, 37, 400]))  # mostly contiguous, sometimes a gap
        n = int(rng.choice([1, 49, 50, 333, 2_500]))  # 2,500 samples: more than the ring's 40 frames
        audio = (rng.standard_normal(n) * rng.uniform(0.01, 0.5)).astype(np.float32)
        levels.push(np.square(audio), pos)
        heard[pos : pos + n], seen[pos : pos + n] = audio.astype(np.float64) ** 2, True
        pos += n
        newest = (pos - 1) // hop
        for first in (newest - kept + 1, newest - 10, newest):
            lo, hi = max(first, 0) * hop, (newest + 1) * hop
            want = 10 * np.log10(heard[lo:hi][seen[lo:hi]].mean()) if seen[lo:hi].any() else -120.0
            assert levels.level_db(first, newest - first + 1) == pytest.approx(max(want, -120.0), abs=1e-5)  # float32 squares and sums
