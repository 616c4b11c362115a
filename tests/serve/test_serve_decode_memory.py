"""Decoding memory stays inside its documented bound: per format (the measured cost of serve/formats.py), and for
the app as a whole (DECODE_MEMORY_MIB). Peaks are measured in child processes (tests/serve/decode_memory_probe.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio
import pytest
from PIL import Image

from serve.decode_budget import MIB, DecodeBudget
from serve.formats import DECODE_BYTES_PER_PIXEL, DECODE_FIXED_BYTES
from serve.settings import Settings, SettingsError
from tests.serve.decode_memory_probe import CASES

MARGIN = 2 * MIB  # the interpreter's own noise between two readings of the resident set
MEGAPIXELS = 8  # big enough that the per-pixel part dominates, small enough to build and decode in seconds

# The dearest case of each format (all cases and sizes: docs/serving.md, "Reliability").
WORST = {
    "JPEG": "jpeg-progressive-cmyk",
    "PNG": "png-palette-alpha",
    "WEBP": "webp-rgba-lossless",
    "AVIF": "avif-rgba",
    "GIF": "gif-alpha",
    "BMP": "bmp-rle8",
    "TIFF": "tiff-rgba",
}


def probe(*args: object) -> dict:
    command = [sys.executable, "-m", "tests.serve.decode_memory_probe", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_every_format_has_a_measured_case():
    assert set(WORST) == set(DECODE_BYTES_PER_PIXEL)
    assert set(WORST.values()) <= set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", WORST)
def test_the_worst_case_of_each_format_stays_inside_its_cost(fmt):
    result = probe(WORST[fmt], MEGAPIXELS)
    cost = DECODE_BYTES_PER_PIXEL[fmt] * result["pixels"] + DECODE_FIXED_BYTES
    assert result["peak_bytes"] <= cost + MARGIN, f"{result['peak_bytes'] / result['pixels']:.1f} B/px"
    assert result["peak_bytes"] > cost / 4  # the probe really decoded the picture


@pytest.mark.slow
def test_two_worst_uploads_at_once_stay_within_the_budget():
    # Each 8-MP RGBA WebP reserves 20 B x 8 MP + 24 MiB = 177 MiB; two at once would take 320 MB (measured), so
    # a 256-MiB budget lets one decode at a time.
    budget_mib = 256
    result = probe("webp-rgba-lossless", MEGAPIXELS, "--app", budget_mib)
    assert result["statuses"] == [200, 200]
    assert result["peak_bytes"] <= budget_mib * MIB + MARGIN


def test_an_image_dearer_than_the_whole_budget_is_413(make_client, encode):
    client = make_client(decode_memory_mib=30)  # 30 MiB: 24 MiB fixed + 20 B x 300K WebP pixels fits, 2 MP does not
    small = encode(Image.new("RGB", (600, 500), (255, 0, 0)), "WEBP")
    big = encode(Image.new("RGB", (2000, 1000), (255, 0, 0)), "WEBP")
    assert client.post("/classify", content=small).status_code == 200
    response = client.post("/classify", content=big)
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "too_many_pixels"
    assert "2000x1000 WEBP needs about 62 MiB to decode, more than the 30 MiB" in body["detail"]


def test_the_budget_setting():
    assert Settings().decode_memory_mib == 1024
    assert Settings.from_env({"DECODE_MEMORY_MIB": "512"}).decode_memory_mib == 512
    with pytest.raises(SettingsError):
        Settings.from_env({"DECODE_MEMORY_MIB": "0"})


# ---- the byte-weighted semaphore ----


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_reservations_wait_until_they_fit_in_arrival_order():
    budget = DecodeBudget(100)
    order: list[str] = []

    async def hold(name: str, cost: int, until: anyio.Event) -> None:
        async with budget.reserve(cost):
            order.append(name)
            await until.wait()

    release_a, release_b, release_c = anyio.Event(), anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(hold, "a", 60, release_a)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(hold, "b", 70, release_b)  # does not fit beside a
        await anyio.wait_all_tasks_blocked()
        group.start_soon(hold, "c", 10, release_c)  # would fit, but b came first
        await anyio.wait_all_tasks_blocked()
        assert order == ["a"]
        assert (budget.waiting, budget.reserved) == (2, 60)
        release_a.set()
        await anyio.wait_all_tasks_blocked()
        assert order == ["a", "b", "c"]
        assert budget.reserved == 80
        release_b.set()
        release_c.set()
    assert budget.reserved == 0


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_way():
    budget = DecodeBudget(100)
    release = anyio.Event()
    granted: list[str] = []

    async def hold(name: str, cost: int) -> None:
        async with budget.reserve(cost):
            granted.append(name)
            await release.wait()

    async with anyio.create_task_group() as group:
        group.start_soon(hold, "a", 60)
        await anyio.wait_all_tasks_blocked()
        with anyio.move_on_after(0.01):
            await hold("big", 90)  # waits, then gives up
        group.start_soon(hold, "c", 40)  # fits beside a once big is gone
        await anyio.wait_all_tasks_blocked()
        assert granted == ["a", "c"]
        assert budget.waiting == 0
        release.set()
    assert budget.reserved == 0


@pytest.mark.anyio
async def test_a_cost_over_the_capacity_never_waits():
    with pytest.raises(ValueError, match="can never fit"):
        async with DecodeBudget(10).reserve(11):
            pass
