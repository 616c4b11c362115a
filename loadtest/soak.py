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


async def _soak_and_stop(
    server: Server, next_body: Callable[[], bytes], concurrency: int, seconds: float, tick: Callable[[dict], None]
) -> dict:
    records: list[tuple[float, float, str, bool]] = []  # (start, end, status, resent)
    stop = asyncio.Event()

    async def worker() -> None:
        connection = Connection(server.url)
        while not stop.is_set():
            resends = connection.resent
            status, started, latency = await timed_post(connection, next_body())
            resent = connection.resent > resends
            records.append(
                (started, started + latency, UNREAD if resent and status == "refused" else str(status), resent)
            )
            if status == "refused":
                await asyncio.sleep(0.01)  # the server is gone: do not spin
        connection.close()

    async def sample_rss(until: float) -> list[int]:
        samples = []
        while time.perf_counter() < until:
            await asyncio.sleep(1)
            memory = server.memory_kb()
            samples.append(memory["VmRSS"])
            tick({"rss_mb": round(memory["VmRSS"] / 1024, 1)})
        return samples

    async def probe(since: float) -> list[tuple[float, bool]]:
        """Fresh connections every 5 ms after SIGTERM: (time, accepted)."""
        attempts = []
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.close()
                attempts.append((time.perf_counter() - since, True))
            except OSError:
                attempts.append((time.perf_counter() - since, False))
            await asyncio.sleep(0.005)
        return attempts

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    samples = await sample_rss(started + seconds)
    soak_end = time.perf_counter()
    memory = server.memory_kb()
    sigterm_at = time.perf_counter()
    server.terminate()
    prober = asyncio.create_task(probe(sigterm_at))
    while server.proc.poll() is None and time.perf_counter() - sigterm_at < 60:
        await asyncio.sleep(0.01)
    exited_after = time.perf_counter() - sigterm_at
    await asyncio.sleep(0.05)  # let the probe and the workers see the closed port
    stop.set()
    await asyncio.gather(*workers)
    attempts = await prober
    exit_code = server.stop()

    # The soak is judged on what it answered before the SIGTERM; what was in flight then, by the SIGTERM rules.
    soak = Counter(s for _, t1, s, _ in records if t1 < sigterm_at)
    soak_resent = sum(resent for _, t1, _, resent in records if t1 < sigterm_at)
    in_flight = Counter(s for t0, t1, s, _ in records if t0 < sigterm_at <= t1)
    after = Counter(s for t0, _, s, _ in records if t0 >= sigterm_at)
    first_refused = next((t for t, accepted in attempts if not accepted), None)
    accepted_late = sum(1 for t, accepted in attempts if accepted and first_refused is not None and t > first_refused)
    stable, growth = rss_stable(samples)
    soak_ok = sum(n for s, n in soak.items() if s == "200")
    # Every request that ended any other way, timed against the SIGTERM: says whether it was the shutdown or the load.
    unexpected = [
        {"status": s, "resent": resent, "sent_s": round(t0 - sigterm_at, 4), "ended_s": round(t1 - sigterm_at, 4)}
        for t0, t1, s, resent in records
        if (s not in ALLOWED or resent) and t0 < sigterm_at
    ]
    return {
        "soak": {
            "concurrency": concurrency,
            "seconds": round(soak_end - started, 2),
            "statuses": dict(sorted(soak.items())),
            "throughput_rps": round(soak_ok / (soak_end - started), 1),
            "resent": soak_resent,
            "only_200_and_503": set(soak) <= ALLOWED and soak_resent == 0,
            "rss_mb": {
                "first": round(samples[0] / 1024, 1),
                "last": round(samples[-1] / 1024, 1),
                "max": round(max(samples) / 1024, 1),
                "peak_hwm": round(memory["VmHWM"] / 1024, 1),
                "growth_last_vs_first_quarter": round(growth / 1024, 1),
            },
            "rss_samples_mb": [round(s / 1024, 1) for s in samples],
            "rss_stable": stable,
        },
        # Requests sent before the SIGTERM that were not answered 200/503 at the first try: times are from the SIGTERM.
        "not_plainly_answered": unexpected[:20],
        "sigterm": {
            "in_flight_at_sigterm": dict(sorted(in_flight.items())),
            "sent_after_sigterm": dict(sorted(after.items())),
            "exit_after_s": round(exited_after, 3),
            "new_connections_refused_after_s": None if first_refused is None else round(first_refused, 3),
            "refused_before_exit": first_refused is not None and first_refused < exited_after,
            "accepted_after_first_refusal": accepted_late,
            "exit_code": exit_code,
            "passed": exit_code == 0
            and set(in_flight) <= ALLOWED | {UNREAD}
            and first_refused is not None
            and accepted_late == 0,
        },
    }


def run(
    server: Server, next_body: Callable[[], bytes], *, concurrency: int, seconds: float, tick: Callable[[dict], None]
) -> dict:
    """Soak `server` (then SIGTERM it: it is stopped when this returns)."""
    return asyncio.run(_soak_and_stop(server, next_body, concurrency, seconds, tick))
