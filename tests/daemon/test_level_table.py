"""The level table: window levels exact whatever the reads; dead air announced once after silence_s, sound
once when the level returns; many streams' reads measured in one push as each would be alone."""

import numpy as np
import pytest

from instrumentd.daemon.level_table import LevelTable

SR = 1000  # hz: 100-sample frames


def table(frames_kept: int = 50, hop: int = 100) -> LevelTable:
    return LevelTable(hop_length=hop, frames_kept=frames_kept, silence_db=-60.0, silence_s=1.0, rate=SR)


class Stream:
    """Reads of one stream (row 3 of its table) measured as the worker does, one push a read."""

    def __init__(self):
        self.table, self.row, self.pos = table(), 3, 0
        self.table.start(self.row)

    def read(self, audio: np.ndarray) -> list[tuple[str, str]]:
        self.table.add_read(self.row, audio, self.pos)
        self.pos += len(audio)
        level_db, notes = self.table.push()
        return [(state, reason) for _, state, reason in notes]

    @property
    def quiet_s(self) -> float:
        return int(self.table.quiet[self.row]) / SR


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
    assert s.read(np.zeros(900, np.float32)) == [] and s.quiet_s == 0.9
    assert s.read(np.zeros(200, np.float32)) == [("silent", "level under -60 dBFS for 1.1 s")]


def test_a_short_pause_or_a_gap_in_the_audio_is_not_dead_air():
    s = Stream()
    quiet = np.zeros(700, np.float32)
    assert s.read(quiet) == []
    s.table.restart(s.row)  # the source came back after an outage: the silence before it does not run on
    assert s.read(quiet) == []
    assert s.read(np.concatenate([np.full(100, 0.5, np.float32), quiet])) == []
    assert s.quiet_s == 0.7


def test_each_read_gets_the_level_of_its_samples():
    levels = table()
    levels.start(0)
    levels.start(1)
    levels.add_read(0, np.full(150, 0.5, np.float32), 30)
    levels.add_read(1, np.zeros(10, np.float32), 0)
    level_db, notes = levels.push()
    assert level_db.tolist() == [-6.0, -120.0] and notes == []


def test_window_levels_measure_exactly_the_frames_asked():
    levels = table()
    levels.start(0)

    def push(audio: np.ndarray, pos: int) -> None:
        levels.add_read(0, audio, pos)
        levels.push()

    def level_db(first: int, n: int) -> float:
        return float(levels.level_db(np.array([0]), np.array([first]), n)[0])

    loud = np.full(1000, 0.5, np.float32)  # frames 0-9 at -6 dBFS
    push(np.concatenate([loud, np.zeros(1000, np.float32)]), 0)  # frames 10-19 silent, one read
    assert level_db(0, 10) == pytest.approx(20 * np.log10(0.5))
    assert level_db(10, 10) == -120.0
    assert level_db(5, 10) == pytest.approx(20 * np.log10(0.5) - 10 * np.log10(2))
    push(np.full(150, 0.1, np.float32), 2050)  # a read that starts and ends mid-frame, after a gap
    assert level_db(20, 3) == pytest.approx(-20.0)  # frame 20 unheard: counted by samples heard
    push(np.zeros(10_000, np.float32), 2200)  # 100 frames later: the first frames are gone
    assert level_db(0, 10) == -120.0 and levels.newest[0] == 121


def test_many_streams_in_one_push_are_measured_as_each_alone_whatever_the_reads():
    """Reads of any size, some past the ring's reach, some after gaps, several streams a push in any row
    order: each window's level is that of the samples heard in its frames (computed here from the whole
    signal at once), and each stream's dead air and levels are those of a table that measures it alone."""
    rng = np.random.default_rng(3)
    hop, kept, n_streams = 50, 40, 5
    together = table(kept, hop)
    alone = [table(kept, hop) for _ in range(n_streams)]
    heard = np.zeros((n_streams, 400_000))  # squares of the samples heard, by grid index
    seen = np.zeros((n_streams, 400_000), bool)
    pos = np.zeros(n_streams, int)
    rows = [7, 2, 0, 5, 3]  # each stream's row in the shared table
    for s, row in enumerate(rows):
        together.start(row)
        alone[s].start(0)
    notes_together, notes_alone = [], []
    for _ in range(60):
        order = [s for s in rng.permutation(n_streams) if rng.random() < 0.7]  # some streams have no read
        reads = {}
        for s in order:
            pos[s] += int(rng.choice([0, 0, 0, 37, 400]))  # mostly contiguous, sometimes a gap
            n = int(rng.choice([1, 49, 50, 333, 2_500]))  # 2,500 samples: more than the ring's 40 frames
            loud = rng.random() < 0.5
            audio = (rng.standard_normal(n) * (rng.uniform(0.01, 0.5) if loud else 1e-4)).astype(np.float32)
            reads[s] = (audio, int(pos[s]))
            heard[s, pos[s] : pos[s] + n], seen[s, pos[s] : pos[s] + n] = audio.astype(np.float64) ** 2, True
            pos[s] += n
            together.add_read(rows[s], audio, reads[s][1])
        level_db, notes = together.push()
        notes_together += [(order[k], state, reason) for k, state, reason in notes]
        for k, s in enumerate(order):
            alone[s].add_read(0, *reads[s])
            (level_alone,), notes = alone[s].push()
            notes_alone += [(s, state, reason) for _, state, reason in notes]
            assert level_db[k] == level_alone
        for s in order:
            newest = (pos[s] - 1) // hop
            for first in (newest - kept + 1, newest - 10, newest):
                lo, hi = max(first, 0) * hop, (newest + 1) * hop
                want = 10 * np.log10(heard[s, lo:hi][seen[s, lo:hi]].mean()) if seen[s, lo:hi].any() else -120.0
                got = together.level_db(np.array([rows[s]]), np.array([first]), newest - first + 1)[0]
                assert got == pytest.approx(max(want, -120.0), abs=1e-5)  # float32 squares and sums
    assert sorted(notes_together) == sorted(notes_alone) and len(notes_alone) > 5
    assert together.silent[rows].tolist() == [bool(a.silent[0]) for a in alone]


def test_a_row_moved_to_another_table_goes_on_as_if_it_had_stayed():
    here, there = table(), table()
    here.start(4)
    here.add_read(4, np.full(1500, 1e-4, np.float32), 0)  # 1.5 s of silence
    (_, notes) = here.push()
    assert [state for _, state, _ in notes] == ["silent"]
    there.start(9, here.state(4))
    there.add_read(9, np.full(100, 0.5, np.float32), 1500)
    level_db, notes = there.push()
    assert [(state, reason) for _, state, reason in notes] == [("sound", "level -6.0 dBFS after 1.5 s of silence")]
    assert there.level_db(np.array([9]), np.array([10]), 6)[0] == pytest.approx(
        10 * np.log10((5 * 1e-8 + 0.25) / 6), abs=1e-4)  # frames 10-14 quiet, 15 loud
