"""What /proc says of processes: CPU seconds, resident and proportional memory, children (None or
empty where there is no /proc). The benches read their daemons' and decoders' costs through it."""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far, None where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of stat)


def _proc_kb(path: str, key: str) -> float | None:
    """The ``key:`` line of a /proc file in kB, as MB; None where it cannot be read."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb(pid: int | str = "self") -> float | None:
    """Resident memory of process ``pid`` (this one by default), MB."""
    return _proc_kb(f"/proc/{pid}/status", "VmRSS")


def _processes() -> dict[int, tuple[str, int]]:
    """Every process now: pid -> (command name, parent pid), from /proc (empty where there is none)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                out[int(entry.name)] = (stat[stat.index("(") + 1:stat.rindex(")")],
                                        int(stat.rsplit(")", 1)[1].split()[1]))
            except (OSError, IndexError, ValueError):
                continue
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a ``serve --processes K`` parent and its daemons), from /proc."""
    parent = {p: up for p, (_, up) in _processes().items()}
    tree, frontier = [pid], {pid}
    while frontier:
        frontier = {child for child, up in parent.items() if up in frontier}
        tree += sorted(frontier)
    return tree


def process_tree_total(pid: int, read) -> float | None:
    """``read(p)`` summed over :func:`process_tree` of ``pid``; None when ``pid`` itself cannot be read."""
    values = [read(p) for p in process_tree(pid)]
    return None if values[0] is None else sum(v for v in values if v is not None)


def pss_mb(pid: int) -> float | None:
    """Proportional set size: the process's own memory plus its share of what it maps with others (the
    ffmpeg binary and libraries that every decoder shares), so that the decoders' figures add up."""
    pss = _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss")
    return rss_mb(pid) if pss is None else pss


def children(pid: int, command: str) -> list[int]:
    """Direct child processes of ``pid`` running ``command`` (from /proc): not, say, the resource tracker
    that multiprocessing leaves behind."""
    return [p for p, (name, up) in _processes().items() if up == pid and name == command]
