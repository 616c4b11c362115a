"""A server's whole process tree from /proc: the server process and every descendant, and what they cost together.

Frameworks such as Mosec and LitServe serve from several processes (an HTTP front, inference workers, a manager);
the CPU a request costs and the memory a server holds are the tree's, not its first process's. RSS summed over a
tree counts each shared page once per process (forked children share their parent's pages), so the tree's PSS
(proportional set size: each shared page split between the processes that map it) is the honest figure for memory.
A process may exit while it is read: it is then left out, never an error.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# /proc/<pid>/task/<tid>/children needs CONFIG_PROC_CHILDREN; without it, parents are read from every /proc/<pid>/stat.
HAS_CHILDREN_FILES = (PROC / "self" / "task" / str(os.getpid()) / "children").exists()


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 on ("(comm)" may hold spaces and parentheses, so split after its last one)."""
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def _children_from_tasks(pid: int) -> list[int]:
    """The children that every thread of pid started (each child is listed under the thread that forked it)."""
    children: list[int] = []
    for task in (PROC / str(pid) / "task").iterdir():
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended
            continue
    return children


def _parents() -> dict[int, int]:
    """pid -> parent pid, for every process on the machine (the slow way, read from each /proc/<pid>/stat)."""
    parents = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return parents


def tree(pid: int) -> list[int]:
    """pid and all its descendants that are alive now (pid first); [] once pid itself has gone."""
    if not (PROC / str(pid)).is_dir():
        return []
    parents = None if HAS_CHILDREN_FILES else _parents()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        if parents is not None:
            children = [child for child, parent in parents.items() if parent == current]
        else:
            try:
                children = _children_from_tasks(current)
            except FileNotFoundError:  # exited while we read it
                children = []
        todo += [child for child in children if child not in found]
    return found


def cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """User + system CPU time of one process, all its threads; with `reaped`, also that of the children it has
    waited for (a worker that exited during a level still counts)."""
    stat = _stat_fields(pid)
    ticks = int(stat[11]) + int(stat[12])  # utime, stime
    if reaped:
        ticks += int(stat[13]) + int(stat[14])  # cutime, cstime
    return ticks / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the whole tree under pid. Children still alive are counted once (each process's own time
    plus only its reaped children's, who are no longer in the tree)."""
    total = 0.0
    for member in tree(pid):
        try:
            total += cpu_seconds(member)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of one process, in kB."""
    values = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def rollup_kb(pid: int) -> dict[str, int]:
    """Rss and Pss of one process, in kB, from one walk of its pages (/proc/<pid>/smaps_rollup): read together, so
    Pss <= Rss always holds (VmRSS in /status comes from counters that may lag behind)."""
    values = {}
    for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key.lower()] = int(rest.split()[0])
    if len(values) != 2:
        raise ValueError(f"no Rss and Pss in /proc/{pid}/smaps_rollup")  # a zombie or a kernel thread: no memory
    return values


def tree_memory_kb(pid: int) -> dict[str, int]:
    """The tree's process count, RSS and PSS summed, in kB; processes with no memory (zombies) are not counted."""
    processes = rss = pss = 0
    for member in tree(pid):
        try:
            rollup = rollup_kb(member)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        processes, rss, pss = processes + 1, rss + rollup["rss"], pss + rollup["pss"]
    return {"processes": processes, "rss": rss, "pss": pss}


def _alive_as(pid: int, started: str) -> bool:
    """pid is still the process that started at `started` (not a reused pid), and not a zombie."""
    try:
        stat = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[19] == started and stat[0] != "Z"  # starttime; state


def identities(pid: int) -> dict[int, str]:
    """The descendants of pid (pid itself left out), each with its start time, to know them again later."""
    found = {}
    for member in tree(pid)[1:]:
        try:
            found[member] = _stat_fields(member)[19]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def reap_leftovers(members: dict[int, str], root: int, grace: float = 10.0) -> list[int]:
    """After `root` exited: the members of its tree still running `grace` seconds later, killed (SIGKILL)."""
    deadline = time.monotonic() + grace
    alive = [pid for pid, started in members.items() if pid != root and _alive_as(pid, started)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _alive_as(pid, members[pid])]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    dying, deadline = list(alive), time.monotonic() + 5
    while dying and time.monotonic() < deadline:  # SIGKILL lands asynchronously
        time.sleep(0.02)
        dying = [pid for pid in dying if _alive_as(pid, members[pid])]
    return alive


PEAK_SAMPLE_S = 0.2  # reading smaps_rollup walks the page tables: about 1 ms a process, 5 times a second


class PeakSampler:
    """Samples a tree's memory every `interval` seconds in a thread, keeping the largest RSS, PSS and process count
    seen. Peaks between samples are missed: a floor of the true peak, not the peak itself."""

    def __init__(self, pid: int, interval: float = PEAK_SAMPLE_S) -> None:
        self.pid, self.interval = pid, interval
        self.peak = {"processes": 0, "rss": 0, "pss": 0}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _sample(self) -> None:
        now = tree_memory_kb(self.pid)
        self.peak = {key: max(self.peak[key], now[key]) for key in self.peak}
        self.samples += 1

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # the state at the end counts too
