"""Every setting of the service, read once from environment variables (documented in the README)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# The shipped model lives at <repo>/shipped/; computed from this package so it also holds in the image (/app).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "shipped" / "model.int8.onnx"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"  # Cloud Run routes to the container's external interface
    port: int = 8000
    model_path: Path = DEFAULT_MODEL_PATH
    cors_origins: tuple[str, ...] = ()
    ort_threads: int = 0
    decode_concurrency: int = 2
    max_body_bytes: int = 10 * 1024 * 1024
    # A slow upload holds a queue slot while it trickles in; past this it is cut off (Cloud Run's own timeout is 30 s).
    body_timeout_s: float = 20.0
    max_pixels: int = 50_000_000
    top_k: int = 5
    batch_max_size: int = 16
    # 0: no lingering. Requests pile up while a batch runs, which batches them anyway; waiting only idled the model
    # (loadtest, 2 CPUs: +10-20 % throughput and lower p50 at 4 and 16 clients without it).
    batch_max_wait_ms: float = 0.0
    queue_size: int = 64
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, parse: Callable[[str], T], default: T, *, minimum: float | None = None) -> T:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = parse(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a valid {parse.__name__} value") from None
            if minimum is not None and value < minimum:  # type: ignore[operator]
                raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
            return value

        log_level = get("LOG_LEVEL", str.lower, cls.log_level)
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        origins = tuple(o.strip().rstrip("/") for o in env.get("CORS_ORIGINS", "").split(",") if o.strip())
        return cls(
            host=get("HOST", str, cls.host),
            port=get("PORT", int, cls.port, minimum=0),
            model_path=get("MODEL_PATH", Path, cls.model_path),
            cors_origins=origins,
            ort_threads=get("ORT_THREADS", int, cls.ort_threads, minimum=0),
            decode_concurrency=get("DECODE_CONCURRENCY", int, cls.decode_concurrency, minimum=1),
            max_body_bytes=get("MAX_BODY_BYTES", int, cls.max_body_bytes, minimum=1),
            body_timeout_s=get("BODY_TIMEOUT_S", float, cls.body_timeout_s, minimum=0.001),
            max_pixels=get("MAX_PIXELS", int, cls.max_pixels, minimum=1),
            top_k=get("TOP_K", int, cls.top_k, minimum=1),
            batch_max_size=get("BATCH_MAX_SIZE", int, cls.batch_max_size, minimum=1),
            batch_max_wait_ms=get("BATCH_MAX_WAIT_MS", float, cls.batch_max_wait_ms, minimum=0),
            queue_size=get("QUEUE_SIZE", int, cls.queue_size, minimum=1),
            log_level=log_level,
        )
