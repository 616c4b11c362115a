"""A server's whole process tree (psutil): the server process and every descendant, and what they cost together.

Frameworks such as Mosec and LitServe serve from several processes (an HTTP front, inference workers, a manager);
the CPU a request costs and the memory a server holds are the tree's, not its first process's. RSS summed over a
tree counts each shared page once per process (forked children share their parent's pages), so the tree's PSS
(proportional set size: each shared page split between the processes that map it) is the honest figure for memory.
A process may exit while it is read: it is then left out, never an error.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil

PROC = Path("/proc")
GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)  # a process that ended while it was read


def tree(pid: int) -> list[int]:
    """pid and all its descendants that are alive now (pid first); [] once pid itself has gone."""
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except GONE:
        return []


def cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """User + system CPU time of one process, all its threads; with `reaped`, also that of the children it has
    waited for (a worker that exited during a level still counts)."""
    times = psutil.Process(pid).cpu_times()
    own = times.user + times.system
    return own + (times.children_user + times.children_system if reaped else 0.0)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the whole tree under pid. Children still alive are counted once (each process's own time
    plus only its reaped children's, who are no longer in the tree)."""
    total = 0.0
    for member in tree(pid):
        try:
            total += cpu_seconds(member)
        except GONE:
            continue
    return total


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of one process, in kB. Read from /proc/<pid>/status: psutil has no peak RSS on
    Linux."""
    values = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def rollup_kb(pid: int) -> dict[str, int]:
    """Rss and Pss of one process, in kB (psutil: Pss from one walk of its pages, /proc/<pid>/smaps_rollup)."""
    memory = psutil.Process(pid).memory_full_info()
    if memory.rss == 0:
        raise ValueError(f"process {pid} has no memory (a zombie or a kernel thread)")
    return {"rss": memory.rss // 1024, "pss": memory.pss // 1024}


def tree_memory_kb(pid: int) -> dict[str, int]:
    """The tree's process count, RSS and PSS summed, in kB; processes with no memory (zombies) are not counted."""
    processes = rss = pss = 0
    for member in tree(pid):
        try:
            rollup = rollup_kb(member)
        except (*GONE, ValueError):
            continue
        processes, rss, pss = processes + 1, rss + rollup["rss"], pss + rollup["pss"]
    return {"processes": processes, "rss": rss, "pss": pss}


def identities(pid: int) -> dict[int, psutil.Process]:
    """The descendants of pid (pid itself left out), each as a psutil.Process, which knows it again later: a reused
    pid is another process to it (its start time differs)."""
    try:
        return {child.pid: child for child in psutil.Process(pid).children(recursive=True)}
    except GONE:
        return {}


def alive(process: psutil.Process) -> bool:
    """Still the process it was (not a reused pid), and not a zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except GONE:
        return False


def reap_leftovers(members: dict[int, psutil.Process], root: int, grace: float = 10.0) -> list[int]:
    """After `root` exited: the members of its tree still running `grace` seconds later, killed (SIGKILL)."""
    running = [process for pid, process in members.items() if pid != root and alive(process)]
    _, left = psutil.wait_procs(running, timeout=grace)
    left = [process for process in left if alive(process)]
    for process in left:
        try:
            process.kill()  # psutil checks the process is still the one it knew before it signals
        except GONE:
            continue
    psutil.wait_procs(left, timeout=5)  # SIGKILL lands asynchronously
    return sorted(process.pid for process in left)


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
