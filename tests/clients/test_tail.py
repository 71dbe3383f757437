"""Following events (:mod:`instrumentd.clients.tail`): the filter, the flags' parsers, the text line."""

import pytest

from instrumentd.clients.tail import Filter, parse_instruments, parse_topics
from instrumentd.daemon.events import segment_event, source_event, status_event, window_event
from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import ParameterError


def _window(stream="a", seq=0, top="pia", p_top=0.6, labels=("pia",)):
    probs = [(1 - p_top) / 10] * 11
    probs[CLASSES.index(top)] = p_top
    return window_event(stream, seq, 0.0, 3.0, 0.0, probs, CLASSES, list(labels), 12.0, "m", True)


def test_filter_on_schema_events():
    window, seg = _window(), segment_event("a", 1, "vio", "start", 1.0, None, None, 0.0, "m")
    status = status_event(0.0, 1.0, "cpu", "m", True, 0, {})
    keep = Filter(set(), set(), None, ["window", "segment"])
    assert keep(window) and keep(seg) and not keep(status)
    assert not Filter({"b"}, set(), None, ["window", "segment", "status"])(window)
    assert Filter({"b"}, set(), None, ["status"])(status)
    by_instrument = Filter(set(), {"vio"}, None, ["window", "segment"])
    assert not by_instrument(window) and by_instrument(seg)
    assert by_instrument(_window(top="cel", labels=("cel", "vio")))  # in the labels, though not on top
    assert Filter(set(), {"pia"}, 0.6, ["window"])(window) and not Filter(set(), {"pia"}, 0.61, ["window"])(window)
    assert Filter(set(), set(), 0.5, ["window"])(window) and not Filter(set(), {"cla"}, 0.5, ["window"])(window)
    down = source_event("a", 2, "down", "ffmpeg exited (code 0)", "a=ffmpeg:http://x/live", 0.0)
    assert Filter(set(), {"vio"}, 0.5, ["source"])(down)  # a lifecycle change has no instrument to filter on
    assert not Filter({"b"}, set(), None, ["source"])(down) and not keep(down)


def test_parsing_flags():
    assert parse_topics("window, status") == ["window", "status"]
    assert parse_topics("segment", status=True) == ["segment", "status"]
    assert parse_instruments(["Piano", "acoustic guitar", "vio"]) == {"pia", "gac", "vio"}
    with pytest.raises(ParameterError, match="'windows'"):
        parse_topics("windows")
    with pytest.raises(ParameterError, match="'kazoo'"):
        parse_instruments(["kazoo"])


def test_text_lines(monkeypatch):
    import time

    from instrumentd.clients.tail import text_line

    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        w = _window(stream="radio", top="vio", p_top=0.97, labels=("vio",))
        w["wall_time"] = "2026-01-05T11:03:04.250+00:00"
        assert text_line(w) == "12:03:04 radio Violin 0.97"
        none = {**_window(top="cla", p_top=0.4, labels=()), "wall_time": w["wall_time"]}
        assert text_line(none) == "12:03:04 a - (top Clarinet 0.40)"
        start = segment_event("radio", 3, "vio", "start", 41.0, None, None, 1767611000.0, "m")
        end = segment_event("radio", 9, "vio", "end", 41.0, 47.5, "end of stream", 1767611000.0, "m")
        assert text_line(start).endswith(" radio start Violin")
        assert text_line(end).endswith(" radio end Violin 41.0-47.5 s (end of stream)")
        source = {"schema": 1, "type": "source", "stream": "radio", "state": "ended", "wall_time": w["wall_time"]}
        assert text_line(source) == "12:03:04 radio source ended"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
