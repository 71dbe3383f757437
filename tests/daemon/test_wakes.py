"""The worker's wake table: which streams a step looks at, and a wake-up from another thread."""

from __future__ import annotations

import threading
import types

from instrumentd.daemon.wakes import Wakes


def test_ready_streams_in_slot_order_with_which_wait_is_over():
    wakes = Wakes()
    a, b, c = (types.SimpleNamespace(slot=k) for k in (5, 0, 2))
    for st in (a, b, c):
        wakes.put(st)  # looked at at once; slot 5 grows the arrays past the others
    assert wakes.ready(1.0) == ([b, c, a], [True, True, True])
    wakes.next_check[[0, 2, 5]] = [0.5, 2.0, 3.0]  # b's window may be in, c's and a's not yet
    wakes.along_at[[0, 2, 5]] = [3.0, 3.0, 0.9]  # a may have a hop to take along
    assert wakes.ready(1.0) == ([b, a], [True, False])
    wakes.drop(b)
    wakes.next_check[0] = 0.0  # a time set after it left (a finished stream's) is not a stream
    assert wakes.ready(1.0) == ([a], [False])


def test_a_wake_from_another_thread_is_seen_while_the_arrays_grow():
    wakes = Wakes()
    far = types.SimpleNamespace(slot=0)
    wakes.put(far)
    wakes.next_check[0] = wakes.along_at[0] = 600.0
    assert wakes.ready(1.0) == ([], [])
    closer = threading.Thread(target=wakes.wake, args=(0,))
    closer.start()
    for k in range(1, 2000):  # the arrays are replaced as they grow, whenever the wake lands
        wakes.put(types.SimpleNamespace(slot=k))
    closer.join()
    wakes.next_check[1:] = wakes.along_at[1:] = 600.0
    assert wakes.ready(1.0) == ([far], [True])
    assert wakes.ready(1.0) == ([far], [True])  # its wait stays cleared until a step sets it again
