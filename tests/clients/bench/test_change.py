"""``bench change``: the plan of phrases, the reading of the events, and one real change through the daemon."""

import pytest

from instrumentd.clients.bench.change import Phrase, announced, plan, render_phrases, serve_file, spurious
from instrumentd.daemon.events import segment_event, window_event
from instrumentd.model.classes import CLASSES


def test_plan_puts_changes_at_every_phase_of_the_hop_grid():
    phrases = plan(("flu", "tru", "pia", "vio", "cla", "cel"), 8.0)
    assert [p.cls for p in phrases] == ["flu", "tru", "pia", "vio", "cla", "cel"]
    assert all(a.end == b.start for a, b in zip(phrases, phrases[1:]))
    assert all(7.5 <= p.end - p.start <= 8.5 for p in phrases)
    phases = {round(p.start % 0.25, 3) for p in phrases[1:]}
    assert len(phases) == 5  # no two changes at the same phase of a 0.25 s hop


def _window(seq, t_end, labels):
    probs = [0.0] * 11
    for c in labels:
        probs[CLASSES.index(c)] = 1 / len(labels)
    return window_event("s", seq, t_end - 3, t_end, 0.0, probs, CLASSES, labels, 50.0, "m", True)


def test_announced_is_the_first_window_inside_the_new_phrase_with_its_label():
    phrases = [Phrase("flu", 0.0, 8.0), Phrase("tru", 8.0, 16.0), Phrase("pia", 16.0, 24.0)]
    events = [_window(0, 7.5, ["flu"]), _window(1, 9.0, ["flu"]), _window(2, 9.75, ["flu", "tru"]),
              _window(3, 10.0, ["tru"]), _window(4, 23.5, ["tru"])]
    hits = announced(events, phrases)
    assert hits[0]["seq"] == 2 and hits[1] is None  # the piano never came: missed
    segs = [segment_event("s", 5, "tru", "start", 6.75, None, None, 0.0, "m"),  # heard 8-9.75 s of trumpet
            segment_event("s", 6, "org", "start", 9.0, None, None, 0.0, "m"),  # no organ anywhere
            segment_event("s", 7, "flu", "end", 0.0, 9.0, "change", 0.0, "m")]
    assert spurious(segs, phrases) == 1


@pytest.mark.slow
def test_a_flute_to_trumpet_change_is_announced_within_the_window(tmp_path, fluidsynth_available):
    phrases = [Phrase("flu", 0.0, 6.0), Phrase("tru", 6.0, 12.0)]
    render_phrases(phrases, tmp_path / "two.wav")
    events = serve_file(f"file+fast:{tmp_path / 'two.wav'}", {"preset": "live"}, "cpu", tmp_path / "log")
    assert [e["seq"] for e in events] == list(range(len(events)))
    [hit] = announced(events, phrases)
    assert hit is not None, [(e.get("t_end"), e.get("labels")) for e in events]
    assert 0.5 < hit["t_end"] - 6.0 < 3.0  # the trumpet filled part of a 3 s window, not all of it
    starts = [e for e in events if e["type"] == "segment" and e["state"] == "start" and e["instrument"] == "tru"]
    between = [e["type"] for e in events if hit["seq"] < e["seq"] < starts[0]["seq"]]
    assert starts and set(between) <= {"segment"}  # the segment opens with that window, no later one
