"""The service under sustained overload, then stopped under load, as Cloud Run stops an instance.

Soak: `concurrency` closed-loop clients (more than QUEUE_SIZE, so back-pressure is exercised) for `seconds`; every
answer must be 200 or the deliberate 503, no connection may close under a request, and the RSS, sampled every
second, must not grow (no leak).
SIGTERM: sent while that load is still running. Requests the server already had must be answered (200, or 503
back-pressure), new connections must be refused while it drains, and the exit code must be 0. A request that was
still on its way when the server closed its idle keep-alive connection was never read: the client resends it, as a
browser does, and the resend is refused. Those are counted apart (`unread_resend_refused`), not as dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from loadtest.client import Connection, timed_post
from loadtest.servers import Server

ALLOWED = {"200", "503"}
UNREAD = "unread_resend_refused"


def rss_stable(samples_kb: list[int]) -> tuple[bool, int]:
    """(stable, growth in kB): the last quarter's peak against the first quarter's, after warm-up.
    Allows 8 MB or 5 %, whichever is larger, for allocator noise; a leak grows without bound."""
    quarter = max(1, len(samples_kb) // 4)
    early, late = max(samples_kb[:quarter]), max(samples_kb[-quarter:])
    return late - early <= max(8192, early // 20), late - early


class Answer(NamedTuple):
    """One request as a client saw it: when it was sent and answered (perf_counter s), how, whether it was resent.
    A tuple, as cheap to record as the plain ones before it: the client shares the CPUs with the server it loads."""

    sent: float
    ended: float
    status: str
    resent: bool


@dataclass
class Timeline:
    """Everything the soak and the SIGTERM are judged on, as measured."""

    concurrency: int
    started: float
    soak_end: float
    rss_samples_kb: list[int]
    memory_at_end_kb: dict[str, int]
    sigterm_at: float
    exited_after_s: float
    exit_code: int
    answers: list[Answer] = field(default_factory=list)
    connection_attempts: list[tuple[float, bool]] = field(default_factory=list)  # (s after SIGTERM, accepted)


async def client_loop(server: Server, next_body: Callable[[], bytes], stop: asyncio.Event, out: list[Answer]) -> None:
    """One closed-loop client on its own keep-alive connection, until `stop`."""
    connection = Connection(server.url)
    while not stop.is_set():
        resends = connection.resent
        status, sent, latency = await timed_post(connection, next_body())
        resent = connection.resent > resends
        out.append(Answer(sent, sent + latency, UNREAD if resent and status == "refused" else str(status), resent))
        if status == "refused":
            await asyncio.sleep(0.01)  # the server is gone: do not spin
    connection.close()


async def sample_rss(server: Server, until: float, tick: Callable[[dict], None]) -> list[int]:
    """The server's RSS in kB, once a second until `until`."""
    samples = []
    while time.perf_counter() < until:
        await asyncio.sleep(1)
        rss = server.memory_kb()["VmRSS"]
        samples.append(rss)
        tick({"rss_mb": round(rss / 1024, 1)})
    return samples


async def probe_new_connections(port: int, since: float, stop: asyncio.Event) -> list[tuple[float, bool]]:
    """Fresh connections every 5 ms after SIGTERM: (seconds since it, accepted)."""
    attempts = []
    while not stop.is_set():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            attempts.append((time.perf_counter() - since, True))
        except OSError:
            attempts.append((time.perf_counter() - since, False))
        await asyncio.sleep(0.005)
    return attempts


async def wait_for_exit(server: Server, since: float, timeout: float = 60) -> float:
    while server.proc.poll() is None and time.perf_counter() - since < timeout:
        await asyncio.sleep(0.01)
    return time.perf_counter() - since


async def soak_and_stop(
    server: Server, next_body: Callable[[], bytes], concurrency: int, seconds: float, tick: Callable[[dict], None]
) -> Timeline:
    answers: list[Answer] = []
    stop = asyncio.Event()
    started = time.perf_counter()
    clients = [asyncio.create_task(client_loop(server, next_body, stop, answers)) for _ in range(concurrency)]
    samples = await sample_rss(server, started + seconds, tick)
    soak_end = time.perf_counter()
    memory = server.memory_kb()
    sigterm_at = time.perf_counter()
    server.terminate()
    prober = asyncio.create_task(probe_new_connections(server.port, sigterm_at, stop))
    exited_after = await wait_for_exit(server, sigterm_at)
    await asyncio.sleep(0.05)  # let the probe and the clients see the closed port
    stop.set()
    await asyncio.gather(*clients)
    attempts = await prober
    return Timeline(
        concurrency, started, soak_end, samples, memory, sigterm_at, exited_after, server.stop(), answers, attempts
    )


def soak_verdict(t: Timeline) -> dict:
    """The soak is judged on what was answered before the SIGTERM."""
    before = [a for a in t.answers if a.ended < t.sigterm_at]
    statuses = Counter(a.status for a in before)
    resent = sum(a.resent for a in before)
    samples = t.rss_samples_kb
    stable, growth = rss_stable(samples)
    return {
        "concurrency": t.concurrency,
        "seconds": round(t.soak_end - t.started, 2),
        "statuses": dict(sorted(statuses.items())),
        "throughput_rps": round(statuses.get("200", 0) / (t.soak_end - t.started), 1),
        "resent": resent,
        "only_200_and_503": set(statuses) <= ALLOWED and resent == 0,
        "rss_mb": {
            "first": round(samples[0] / 1024, 1),
            "last": round(samples[-1] / 1024, 1),
            "max": round(max(samples) / 1024, 1),
            "peak_hwm": round(t.memory_at_end_kb["VmHWM"] / 1024, 1),
            "growth_last_vs_first_quarter": round(growth / 1024, 1),
        },
        "rss_samples_mb": [round(s / 1024, 1) for s in samples],
        "rss_stable": stable,
    }


def sigterm_verdict(t: Timeline) -> dict:
    """What was in flight at the SIGTERM must be answered (or never read), new connections refused, exit 0."""
    in_flight = Counter(a.status for a in t.answers if a.sent < t.sigterm_at <= a.ended)
    after = Counter(a.status for a in t.answers if a.sent >= t.sigterm_at)
    first_refused = next((s for s, accepted in t.connection_attempts if not accepted), None)
    accepted_late = sum(
        1 for s, accepted in t.connection_attempts if accepted and first_refused is not None and s > first_refused
    )
    return {
        "in_flight_at_sigterm": dict(sorted(in_flight.items())),
        "sent_after_sigterm": dict(sorted(after.items())),
        "exit_after_s": round(t.exited_after_s, 3),
        "new_connections_refused_after_s": None if first_refused is None else round(first_refused, 3),
        "refused_before_exit": first_refused is not None and first_refused < t.exited_after_s,
        "accepted_after_first_refusal": accepted_late,
        "exit_code": t.exit_code,
        "passed": t.exit_code == 0
        and set(in_flight) <= ALLOWED | {UNREAD}
        and first_refused is not None
        and accepted_late == 0,
    }


def not_plainly_answered(t: Timeline, limit: int = 20) -> list[dict]:
    """Requests sent before the SIGTERM that were not answered 200/503 at the first try, timed from the SIGTERM:
    says whether it was the shutdown or the load."""
    return [
        {
            "status": a.status,
            "resent": a.resent,
            "sent_s": round(a.sent - t.sigterm_at, 4),
            "ended_s": round(a.ended - t.sigterm_at, 4),
        }
        for a in t.answers
        if (a.status not in ALLOWED or a.resent) and a.sent < t.sigterm_at
    ][:limit]


def soak_then_sigterm(
    server: Server, next_body: Callable[[], bytes], *, concurrency: int, seconds: float, tick: Callable[[dict], None]
) -> dict:
    """Soak `server`, then SIGTERM it (it is stopped when this returns); the results under "soak",
    "not_plainly_answered" and "sigterm"."""
    timeline = asyncio.run(soak_and_stop(server, next_body, concurrency, seconds, tick))
    return {
        "soak": soak_verdict(timeline),
        "not_plainly_answered": not_plainly_answered(timeline),
        "sigterm": sigterm_verdict(timeline),
    }
