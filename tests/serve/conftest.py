"""Fixtures for the serve tests: tiny ONNX models that follow the contract (built with onnx.helper, no torch),
images in every format and mode, and apps/clients built with create_app."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from serve.app import create_app
from serve.model import load_model
from serve.settings import Settings
from tests.serve.tiny_model import build_model, contract_metadata


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def model_path(model_dir: Path) -> Path:
    return build_model(model_dir / "tiny.onnx")


@pytest.fixture(scope="session")
def slow_model_path(model_dir: Path) -> Path:
    return build_model(
        model_dir / "slow.onnx", slow_convs=40, input_size=(96, 96), metadata=contract_metadata(input_size=[96, 96])
    )


@pytest.fixture(scope="session")
def make_model(model_dir: Path) -> Callable[..., Path]:
    """make_model(name, meta={overrides, None deletes a key}, **build_model options) -> path of a new model."""

    def make(name: str, *, meta: dict[str, Any] | None = None, **options: Any) -> Path:
        return build_model(model_dir / name, metadata=contract_metadata(**(meta or {})), **options)

    return make


@pytest.fixture
def make_settings(model_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"model_path": model_path, "ort_threads": 1, "log_level": "warning"}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """A started app (lifespan run: model loaded, warmed up, batcher running) for the given settings."""
    clients: list[TestClient] = []

    def make(model: Any = None, **overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides), model=model))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


class GatedModel:
    """Wraps a loaded model so a test can hold inference mid-call (to fill the queue or form batches)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.batch_sizes: list[int] = []
        self.entered = threading.Event()
        self._open = threading.Event()
        self._open.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def close(self) -> None:
        self.entered.clear()
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def outputs(self, names: list[str], images: np.ndarray) -> tuple[np.ndarray, ...]:
        self.batch_sizes.append(len(images))
        self.entered.set()
        assert self._open.wait(timeout=30), "the test never opened the gate"
        return self._inner.outputs(names, images)


@pytest.fixture
def gated_model(model_path: Path) -> GatedModel:
    return GatedModel(load_model(model_path, threads=1))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    return wait_until


def encode(image: Image.Image, fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def two_tone(size: tuple[int, int] = (64, 48), top=(255, 0, 0), bottom=(0, 0, 255), mode: str = "RGB") -> Image.Image:
    """Top half one colour, bottom half another: the tiny model answers from the top half."""
    width, height = size
    image = Image.new("RGB", size, bottom)
    image.paste(top, (0, 0, width, height // 2))
    return image.convert(mode) if mode != "RGB" else image


@pytest.fixture(name="encode")
def encode_fixture() -> Callable[..., bytes]:
    return encode


@pytest.fixture(name="two_tone")
def two_tone_fixture() -> Callable[..., Image.Image]:
    return two_tone


@pytest.fixture
def red_png() -> bytes:
    return encode(Image.new("RGB", (40, 30), (255, 0, 0)), "PNG")


@pytest.fixture
def red_jpeg() -> bytes:
    return encode(Image.new("RGB", (40, 30), (255, 0, 0)), "JPEG", quality=95)
