"""Room impulse responses for reverb augmentation, simulated once with pyroomacoustics.

Each room is a shoebox of random size (3-25 m by 3-18 m by 2.4-8 m) with a random reverberation
time (0.15-1.2 s, turned into wall absorption by Sabine's formula), one source and one microphone
at random places at least 0.5 m from the walls. The image-source method (pyroomacoustics' C
extension, at most :data:`MAX_ORDER` reflections) gives the response; it is cut to
:data:`IR_SECONDS` with a short fade, its direct sound moved to sample 0 and scaled to unit energy,
so convolving with it colours a clip without delaying or re-levelling it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IR_SECONDS = 1.0  # seconds kept of each response
MAX_ORDER = 60  # image-source reflections at most: 0.1 s a room, tails to about 1 s
RT60_RANGE = (0.15, 1.2)  # seconds
ROOM_MIN = (3.0, 3.0, 2.4)  # metres
ROOM_MAX = (25.0, 18.0, 8.0)  # metres
FADE_SECONDS = 0.05
ROOMS_FILE = "rooms.npy"


def simulate_rooms(count: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """``count`` impulse responses ``float32 [count, IR_SECONDS * sample_rate]``, unit energy, direct sound first."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    length = int(IR_SECONDS * sample_rate)
    fade = np.linspace(1.0, 0.0, int(FADE_SECONDS * sample_rate), dtype=np.float32)
    out = np.zeros((count, length), np.float32)
    for i in range(count):
        while True:  # a large room cannot ring as briefly as some draws ask: draw again
            dims = rng.uniform(ROOM_MIN, ROOM_MAX)
            try:
                absorption, order = pra.inverse_sabine(rng.uniform(*RT60_RANGE), dims)
                break
            except ValueError:
                continue
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption),
                           max_order=min(order, MAX_ORDER))
        room.add_source(rng.uniform(0.5, dims - 0.5))
        room.add_microphone(rng.uniform(0.5, dims - 0.5))
        room.compute_rir()
        ir = np.asarray(room.rir[0][0], np.float32)
        ir = ir[int(np.argmax(np.abs(ir))):][:length]  # the direct sound is the loudest arrival
        if len(ir) == length:  # cut short: fade out instead of a click
            ir[-len(fade):] *= fade
        out[i, : len(ir)] = ir / max(float(np.sqrt((ir**2).sum())), 1e-12)
    return out


def load_or_simulate(folder: str | Path, count: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """The responses saved in ``folder/rooms.npy`` (float16: a bank travels light); simulated and saved
    there (when writable) otherwise."""
    path = Path(folder) / ROOMS_FILE
    if path.is_file():
        rooms = np.load(path, allow_pickle=False)
        if rooms.ndim == 2 and rooms.shape[1] == int(IR_SECONDS * sample_rate):
            return rooms.astype(np.float32)
    rooms = simulate_rooms(count, sample_rate, seed)
    try:
        np.save(path, rooms.astype(np.float16), allow_pickle=False)
    except OSError:  # a read-only bank: simulated again next time
        return rooms
    return rooms
