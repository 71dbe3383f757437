"""The live web page (:mod:`instrumentd.clients.web`): its feed, and a real daemon's page in headless Chromium."""

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from instrumentd.clients.web import LISTENER_QUEUE, Feed
from instrumentd.daemon.events import segment_event, status_event, window_event
from instrumentd.model.classes import CLASSES, NAMES

from ..conftest import free_port
from .conftest import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def _window(seq: int, epoch: float, top: str = "flu") -> dict:
    probs = [0.01] * 11
    probs[CLASSES.index(top)] = 0.9
    return window_event("a", seq, seq * 1.0, seq * 1.0 + 3, epoch, probs, CLASSES, [top], 40.0, "m", True)


def test_feed_keeps_the_last_minutes_and_cuts_off_a_page_that_falls_behind():
    async def scenario():
        feed = Feed(history_s=10.0)
        page = feed.listen()
        for seq in range(30):
            feed.add(_window(seq, 1000.0 + seq))
        feed.add(segment_event("a", 30, "flu", "start", 0.0, None, None, 1030.0, "m"))
        feed.add(status_event(1030.0, 5.0, "cpu", "m", True, 0, {}))
        snap = feed.snapshot()
        assert [w["seq"] for w in snap["windows"]["a"]] == list(range(19, 30))  # 10 s back from the newest
        assert [s["instrument"] for s in snap["segments"]["a"]] == ["flu"] and snap["status"]["uptime_s"] == 5.0
        assert page.qsize() == 32  # every event, in order
        for seq in range(30, 30 + LISTENER_QUEUE):
            feed.add(_window(seq, 1000.0 + seq))
        assert page not in feed.listeners  # too far behind: cut off, its browser reconnects
        got = [page.get_nowait() for _ in range(page.qsize())]
        assert got[-1] is None and len(got) == LISTENER_QUEUE + 1

    asyncio.run(scenario())


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install '.[test]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium not installed (make system-deps)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.slow
def test_the_page_fills_from_replay_then_shows_live_events(daemon, program, browser, tmp_path):
    d = daemon([f"concert=file:{program}"], "--hop", "0.5")
    d.wait_ready()
    wait_for(lambda: sum(e["type"] == "window" for e in d.logged("concert")) >= 4, 60, "4 logged windows")
    before_web = [e["seq"] for e in d.logged("concert")]
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "instrumentd", "web", "--connect", d.pub, "--replay", d.replay,
                            "--listen", f"127.0.0.1:{port}", "--history", "120"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert web.stdout.readline().startswith(f"instrumentd web: http://127.0.0.1:{port}/")
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://127.0.0.1:{port}/")
        card = page.locator('section.stream[data-stream="concert"]')
        # live events after the page opened, on top of the replayed ones
        page.wait_for_function("() => { const s = streams.get('concert');"
                               f" return s && s.windows.length && s.windows.at(-1).seq > {max(before_web) + 4}; }}",
                               timeout=60_000)
        page.wait_for_function("() => document.querySelector('.state').textContent === 'running'", timeout=30_000)
        seqs = page.evaluate("streams.get('concert').windows.map(w => w.seq)")
        logged = {e["seq"]: e for e in d.logged("concert")}
        first_window = min(s for s, e in logged.items() if e["type"] == "window")  # source events come first
        assert seqs[0] == first_window and set(before_web) & set(seqs)  # the first windows came from replay
        assert seqs == [s for s in sorted(logged) if s <= seqs[-1] and logged[s]["type"] == "window"]  # none missed
        newest = logged[seqs[-1]]
        text = card.inner_text()
        assert "concert" in text and "running" in text and "dBFS" in text
        shown = card.locator(".instrument").inner_text()
        expected = " + ".join(NAMES[c] for c in newest["labels"]) or "no predominant instrument"
        assert shown == expected, (shown, newest)
        assert f"top {NAMES[newest['top']]} {round(100 * newest['probabilities'][newest['top']])} %" in text
        segments = [e for e in logged.values() if e["type"] == "segment" and e["seq"] <= seqs[-1]]
        assert segments and NAMES[segments[0]["instrument"]] in card.locator(".segments").inner_text()
        painted = page.evaluate("""() => {
            const c = document.querySelector('.heat');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const colours = new Set();
            for (let i = 0; i < d.length; i += 4 * 97) colours.add(`${d[i]},${d[i + 1]},${d[i + 2]}`);
            return colours.size; }""")
        assert painted > 5  # the heat map drew probabilities, not one flat colour
        assert not errors
        page.screenshot(path=str(tmp_path / "web.png"), full_page=True)
    finally:
        web.terminate()
        web.wait(10)
