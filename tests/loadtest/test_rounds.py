"""--rounds: the servers loaded in alternation, each started fresh every round, and the report's medians per level,
on constructed numbers whose medians are known."""

from __future__ import annotations

from typing import ClassVar

import pytest

import loadtest.__main__ as cli
from loadtest.rounds import merge_records, merge_rounds


def level(concurrency: int, rps: float, p50: float | None, cpu: float, statuses: dict[str, int]) -> dict:
    requests = sum(statuses.values())
    return {
        "concurrency": concurrency,
        "requests": requests,
        "ok": statuses.get("200", 0),
        "seconds": 2.0,
        "throughput_rps": rps,
        "latency_ms": {"p50": p50, "p99": None if p50 is None else p50 * 2},
        "statuses": statuses,
        "resent": 0,
        "server_cpu_ms_per_request": cpu,
    }


def record(rps: tuple[float, float], p50: float | None, pss: float, exit_code: int = 0, reverse: bool = False) -> dict:
    levels = [level(1, rps[0], p50, 1.0 + p50 if p50 else 9.0, {"200": 10}), level(16, rps[1], 8.0, 0.5, {"200": 50})]
    return {
        "ready_s": pss / 100,
        "processes": 4,
        "pss_ready_mb": pss,
        "rss_peak_source": "sampled",
        "scenarios": {"cifar": levels[::-1] if reverse else levels},
        "exit_code": exit_code,
        "left_running": [],
    }


def test_the_median_of_three_rounds_per_level_and_the_counts_summed():
    rounds = [
        record((100, 900), 2.0, 180),
        record((300, 700), 4.0, 200, exit_code=-9, reverse=True),  # levels listed in another order: matched by c
        record((200, 800), 3.0, 190),
    ]
    merged = merge_records(rounds)
    one, sixteen = merged["scenarios"]["cifar"]
    assert (one["concurrency"], sixteen["concurrency"]) == (1, 16)
    assert one["throughput_rps"] == 200
    assert sixteen["throughput_rps"] == 800
    assert one["throughput_rps_rounds"] == [100, 300, 200]  # the spread behind the median
    assert one["latency_ms"] == {"p50": 3.0, "p99": 6.0}
    assert one["server_cpu_ms_per_request"] == 4.0
    assert one["requests"] == one["ok"] == 30
    assert one["statuses"] == {"200": 30}
    assert one["seconds"] == 6.0
    assert one["rounds"] == 3
    assert merged["pss_ready_mb"] == 190
    assert merged["ready_s"] == 1.9
    assert merged["processes"] == 4
    assert merged["rss_peak_source"] == "sampled"
    assert merged["exit_code"] == -9  # any round's failure shows
    assert merged["exit_codes"] == [0, -9, 0]


def test_an_even_count_of_rounds_takes_the_middle_two_and_skips_what_was_not_measured():
    rounds = [record((100, 900), 2.0, 180), record((200, 700), None, 200)]  # 4 processes each
    rounds[1]["scenarios"]["cifar"][0]["statuses"] = {"200": 8, "503": 2}
    merged = merge_records(rounds)
    one = merged["scenarios"]["cifar"][0]
    assert one["throughput_rps"] == 150
    assert one["latency_ms"] == {"p50": 2.0, "p99": 4.0}  # the round with no answer has no latency to add
    assert one["statuses"] == {"200": 18, "503": 2}
    assert merged["processes"] == 4
    assert isinstance(merged["processes"], int)  # the median of two equal counts is that count


def test_one_round_is_reported_exactly_as_before():
    single = record((100, 900), 2.0, 180)
    assert merge_rounds([{"service": single}]) == {"service": single}


class FakeServer:
    """Stands for a started server: records the order of starts and stops."""

    log: ClassVar[list[str]] = []

    def __init__(self, spec, cpus=None) -> None:
        self.spec, self.left_running = spec, []
        FakeServer.log.append(f"start {spec}" + (f" on {sorted(cpus)}" if cpus else ""))

    def stop(self) -> int:
        FakeServer.log.append(f"stop {self.spec}")
        return 0


def test_rounds_alternate_the_servers_and_start_each_fresh(monkeypatch):
    FakeServer.log = []
    throughput = iter([100, 10, 300, 30, 200, 20])  # service, mosec, service, mosec, ...
    monkeypatch.setattr(cli, "Server", FakeServer)
    monkeypatch.setattr(cli, "load_server", lambda server, bodies, args: record((next(throughput), 1), 1.0, 100))
    args = cli.parse_args(["--rounds", "3"])
    rounds = cli.load_every_server(args, {"service": "service", "mosec": "mosec"}, bodies={})
    assert FakeServer.log == ["start service", "stop service", "start mosec", "stop mosec"] * 3
    merged = merge_rounds(rounds)
    assert merged["service"]["scenarios"]["cifar"][0]["throughput_rps"] == 200
    assert merged["mosec"]["scenarios"]["cifar"][0]["throughput_rps"] == 20
    assert list(merged) == ["service", "mosec"]


def test_every_round_pins_each_server_to_the_server_cpus(monkeypatch):
    FakeServer.log = []
    monkeypatch.setattr(cli, "Server", FakeServer)
    monkeypatch.setattr(cli, "load_server", lambda server, bodies, args: record((100, 1), 1.0, 100))
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: {0, 1})
    args = cli.parse_args(["--rounds", "2", "--server-cpus", "0"])
    cli.load_every_server(args, {"service": "service"}, bodies={})
    assert FakeServer.log == ["start service on [0]", "stop service"] * 2


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--peer-wait-ms", "0.5"], ["--targets", "service,triton"]])
def test_the_cli_refuses_what_cannot_run(argv):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)


def test_the_peers_are_targets_but_not_run_by_default():
    assert cli.parse_args([]).targets == ["service", "naive", "noop"]
    assert cli.parse_args(["--targets", "service,mosec,litserve"]).targets == ["service", "mosec", "litserve"]
    assert cli.parse_args(["--targets", "bentoml,rayserve"]).targets == ["bentoml", "rayserve"]
