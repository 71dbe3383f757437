import threading
import time

import numpy as np

from instrumentd.daemon.ringbuffer import RingBuffer


def ramp(a: int, b: int) -> np.ndarray:
    return np.arange(a, b, dtype=np.float32)


def test_reads_what_was_written_across_the_wrap():
    rb = RingBuffer(10, 100)
    rb.write(ramp(0, 7))
    out, start, broken = rb.read(5)
    assert start == 0 and not broken and out.tolist() == ramp(0, 5).tolist()
    rb.write(ramp(7, 15))  # wraps past the end of the array
    out, start, _ = rb.read()
    assert start == 5 and out.tolist() == ramp(5, 15).tolist()
    assert rb.dropped == 0


def test_a_read_into_a_buffer_fills_it_across_the_wrap_and_takes_no_more_than_it_holds():
    rb = RingBuffer(10, 100)
    rb.write(ramp(0, 7))
    rb.read()
    rb.write(ramp(7, 15))  # wraps
    out = np.full(6, -1, np.float32)
    data, start, _ = rb.read(out=out)
    assert start == 7 and np.shares_memory(data, out) and np.array_equal(out, ramp(7, 13))
    data, start, _ = rb.read(out=out)
    assert start == 13 and np.array_equal(data, ramp(13, 15)) and rb.available() == 0


def test_live_overflow_drops_the_oldest_and_counts():
    rb = RingBuffer(10, 100)
    rb.write(ramp(0, 8))
    rb.write(ramp(8, 14))
    assert rb.dropped == 4
    out, start, _ = rb.read()
    assert start == 4 and out.tolist() == ramp(4, 14).tolist()
    rb.write(ramp(14, 40))  # one write larger than the ring
    out, start, _ = rb.read()
    assert start == 30 and out.tolist() == ramp(30, 40).tolist() and rb.dropped == 20


def test_blocking_writer_waits_for_room_and_loses_nothing():
    rb = RingBuffer(8, 100, blocking=True)
    data = ramp(0, 100)
    writer = threading.Thread(target=lambda: [rb.write(data[i : i + 7]) for i in range(0, 100, 7)])
    writer.start()
    got = []
    while len(got) < 100:
        out, _, _ = rb.read(3)
        got += out.tolist()
        time.sleep(0.001)
    writer.join(2)
    assert got == data.tolist() and rb.dropped == 0


def test_close_releases_a_waiting_writer():
    rb = RingBuffer(4, 100, blocking=True)
    t = threading.Thread(target=rb.write, args=(ramp(0, 10),))
    t.start()
    time.sleep(0.05)
    assert t.is_alive()
    rb.close()
    t.join(1)
    assert not t.is_alive()


def test_keep_last_skips_and_reports_a_break():
    rb = RingBuffer(100, 100)
    rb.write(ramp(0, 50))
    out, start, broken = rb.read(keep_last=10)
    assert broken and start == 40 and rb.dropped == 40 and len(out) == 10


def test_a_read_stops_at_a_marked_break():
    rb = RingBuffer(100, 100)
    rb.write(ramp(0, 5))
    rb.mark_break()
    rb.write(ramp(100, 103))
    out, _, broken = rb.read()
    assert out.tolist() == ramp(0, 5).tolist() and not broken
    out, start, broken = rb.read()
    assert broken and start == 5 and out.tolist() == ramp(100, 103).tolist()


def test_arrival_is_the_time_of_the_write_that_held_the_sample():
    rb = RingBuffer(100, 100)
    rb.write(ramp(0, 10), arrival=1.0)
    rb.write(ramp(10, 20), arrival=2.0)
    assert rb.arrival(0) == 1.0 and rb.arrival(9) == 1.0 and rb.arrival(10) == 2.0 and rb.arrival(19) == 2.0


def test_arrival_past_the_writes_remembered_is_the_oldest_or_newest_remembered():
    """More writes than the ring remembers (RECEIPTS), of random sizes: every sample's arrival is its
    write's, the oldest remembered write's for older samples, the newest's for samples not written yet."""
    from instrumentd.daemon.ringbuffer import RECEIPTS

    rng = np.random.default_rng(4)
    rb = RingBuffer(100_000, 100)
    ends, times = [], []
    for i in range(RECEIPTS + 57):
        rb.write(np.zeros(int(rng.integers(1, 40)), np.float32), arrival=float(i))
        ends.append(rb.written)
        times.append(float(i))
    kept_ends, kept_times = ends[-RECEIPTS:], times[-RECEIPTS:]
    for index in range(0, rb.written + 5):
        holder = next((t for e, t in zip(kept_ends, kept_times) if e > index), kept_times[-1])
        assert rb.arrival(index) == holder


def test_a_break_measures_the_outage_from_the_last_write_to_when_the_audio_resumed():
    rb = RingBuffer(1000, 100)  # 100 hz: a sample is 10 ms
    rb.write(ramp(0, 50), arrival=10.0)
    rb.mark_break()
    rb.mark_break()  # a reconnect that failed: one outage, measured once
    rb.write(ramp(100, 120), arrival=13.2)  # 0.2 s of audio that ended arriving 3.2 s later: away 3.0 s
    rb.read()
    assert rb.last_gap == 0  # up to the break
    out, start, broken = rb.read()
    assert broken and start == 50 and len(out) == 20 and rb.last_gap == 300
    rb.mark_break(resumed=20.0)  # a source that knows when its new audio began (a network connection)
    rb.write(ramp(200, 250), arrival=25.0)  # a burst: 5 s of waiting, then 0.5 s of audio at once
    rb.read()
    assert rb.last_gap == 680  # 13.2 -> 20.0
    rb.read()
    assert rb.last_gap == 0


def test_room_is_what_a_write_takes_without_waiting_and_a_closed_ring_takes_anything():
    ring = RingBuffer(100, 44100, blocking=True)
    ring.write(np.ones(60, np.float32))
    assert ring.room() == 40
    ring.read(25)
    assert ring.room() == 65
    ring.close()
    assert ring.room() == 100  # a writer is no longer held back: what it writes is discarded
