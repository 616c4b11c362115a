"""A server's process tree (psutil): found whole, its CPU and memory summed, its leftovers killed; real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from loadtest import process_tree
from loadtest.servers import Server, ServerSpec

BURN_S = 0.6  # CPU seconds the child spends, well above the clock tick (10 ms)
# A parent that starts a child and then only waits: the child burns BURN_S of CPU, says so, and then sleeps ("keep")
# or exits, and the parent reaps it ("reap").
PARENT = textwrap.dedent(
    f"""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", '''
    import sys, time
    while time.process_time() < {BURN_S}:
        pass
    print("burnt", flush=True)
    if sys.argv[1] == "keep":
        time.sleep(60)
    ''', sys.argv[1]], stdout=sys.stdout)
    print(child.pid, flush=True)
    if sys.argv[1] == "reap":
        child.wait()
        print("reaped", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def parent_and_child(request):
    """(parent Popen, child pid) once the child has burnt its CPU; with param "reap", after the parent reaped it."""
    mode = getattr(request, "param", "keep")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "burnt"
        if mode == "reap":
            assert parent.stdout.readline().strip() == "reaped"
        yield parent, child
    finally:
        parent.kill()
        parent.wait()
        if mode == "keep":
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_the_tree_holds_the_child_and_its_cpu_exceeds_the_parents_own(parent_and_child):
    parent, child = parent_and_child
    assert process_tree.tree(parent.pid) == [parent.pid, child]
    own = process_tree.cpu_seconds(parent.pid)
    total = process_tree.tree_cpu_seconds(parent.pid)
    assert total - own >= BURN_S * 0.9  # the child's burn, counted once
    assert total == pytest.approx(own + process_tree.cpu_seconds(child), abs=0.05)


@pytest.mark.parametrize("parent_and_child", ["reap"], indirect=True)
def test_a_child_that_exited_still_counts_through_its_parent(parent_and_child):
    parent, _ = parent_and_child
    assert process_tree.tree(parent.pid) == [parent.pid]
    assert process_tree.tree_cpu_seconds(parent.pid) >= BURN_S * 0.9  # the reaped child's time, as cutime
    assert process_tree.cpu_seconds(parent.pid, reaped=False) < BURN_S * 0.5


def test_tree_memory_sums_rss_and_pss_over_the_processes(parent_and_child):
    parent, child = parent_and_child
    memory = process_tree.tree_memory_kb(parent.pid)
    assert memory["processes"] == 2
    parent_rss, child_rss = (process_tree.status_kb(p)["VmRSS"] for p in (parent.pid, child))
    assert memory["rss"] == pytest.approx(parent_rss + child_rss, rel=0.05)
    assert 0 < memory["pss"] <= memory["rss"]  # shared pages split, never counted more than once per process
    assert memory["pss"] > process_tree.rollup_kb(parent.pid)["pss"]


def test_peak_sampler_keeps_the_largest_tree_it_saw(parent_and_child):
    parent, _ = parent_and_child
    with process_tree.PeakSampler(parent.pid, interval=0.05) as sampler:
        time.sleep(0.2)
    assert sampler.samples >= 3
    assert sampler.peak["processes"] == 2
    assert sampler.peak["rss"] >= process_tree.status_kb(parent.pid)["VmRSS"]
    assert sampler.peak["pss"] > 0


def test_a_gone_process_has_an_empty_tree():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(done.stdout)
    assert process_tree.tree(pid) == []
    assert process_tree.tree_cpu_seconds(pid) == 0
    assert process_tree.tree_memory_kb(pid) == {"processes": 0, "rss": 0, "pss": 0}


def test_a_process_is_known_again_only_while_it_is_the_same_one(parent_and_child):
    parent, child = parent_and_child
    known = process_tree.identities(parent.pid)
    assert set(known) == {child}
    assert process_tree.alive(known[child])
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while process_tree.alive(known[child]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process_tree.alive(known[child])  # gone (or a zombie): never killed as a leftover


# A server that forgets a child: on SIGTERM it exits at once, and its child sleeps on.
ORPHANING_SERVER = textwrap.dedent(
    """
    import http.server, os, signal, subprocess, sys
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Ready).serve_forever()
    """
)


def test_stop_kills_what_a_server_left_running_and_says_so():
    server = Server(ServerSpec("orphaning", [sys.executable, "-c", ORPHANING_SERVER], "/", ready_path="/"))
    try:
        deadline = time.monotonic() + 10
        while len(process_tree.tree(server.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = process_tree.tree(server.proc.pid)[1:]
        known = process_tree.identities(server.proc.pid)[child]
    finally:
        code = server.stop(timeout=2)  # and 2 s for its tree to follow it
    assert code == 0
    assert server.left_running == [child]
    assert not process_tree.alive(known)


def test_a_server_pinned_to_cpus_runs_there_and_the_option_leaves_the_client_a_cpu():
    from loadtest.__main__ import parse_args
    from loadtest.servers import noop_spec

    cpus = sorted(os.sched_getaffinity(0))
    server = Server(noop_spec(), cpus={cpus[0]})
    try:
        assert os.sched_getaffinity(server.proc.pid) == {cpus[0]}
    finally:
        assert server.stop() == 0
    if len(cpus) > 1:
        assert parse_args(["--server-cpus", str(cpus[0])]).server_cpus == {cpus[0]}
    with pytest.raises(SystemExit):
        parse_args(["--server-cpus", ",".join(map(str, cpus))])  # nothing left for the load generator
