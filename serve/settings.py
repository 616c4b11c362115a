"""Every setting of the service, read once from environment variables (documented in docs/serving.md)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from contract import feedback_token

T = TypeVar("T")

# The shipped model lives at <repo>/shipped/; computed from this package so it also holds in the image (/app).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "shipped" / "model.int8.onnx"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Who can run the model: onnxruntime (the serve image's), or OpenVINO where installed (serve/openvino_engine.py).
ENGINES = ("onnxruntime", "openvino")


def flag(raw: str) -> bool:
    """A switch: 1/true/yes/on or 0/false/no/off."""
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def spinning_mode(raw: str) -> str:
    """ORT_SPINNING: auto, or a switch (on/off and its spellings)."""
    if raw.lower() == "auto":
        return "auto"
    return "on" if flag(raw) else "off"


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"  # Cloud Run routes to the container's external interface
    port: int = 8000
    model_path: Path = DEFAULT_MODEL_PATH
    cors_origins: tuple[str, ...] = ()
    ort_threads: int = 0
    # Idle onnxruntime threads: `off` sleep, `on` spin, `auto` spin only while requests come one at a time
    # (serve/spinning.py): spinning ones answer a lone request sooner (1.14x) but take the CPUs that decoding needs
    # under load (0.93x at 16 clients, 0.87x at 64); auto gets the first without the second (benchmarks/ab/README.md).
    ort_spinning: str = "auto"
    # Who runs the model: onnxruntime, or OpenVINO where requirements-serve-openvino.txt is installed (2-3x faster
    # on VNNI CPUs, 180 MB more; docs/serving.md).
    engine: str = "onnxruntime"
    decode_concurrency: int = 2
    # Bytes every decode in flight may take together (serve.decode_budget). 1 GiB: with the model (~200 MB) and the
    # queued uploads it fits Cloud Run's 2 GiB; one 50-MP WebP, the dearest upload (~980 MiB), still fits alone.
    decode_memory_mib: int = 1024
    max_body_bytes: int = 10 * 1024 * 1024
    # The whole upload's limit, below Cloud Run's own 30-s request timeout so the client hears why.
    body_timeout_s: float = 20.0
    # Receiving an upload is bounded on its own, apart from the queue (serve/uploads.py): after the grace (also the
    # first byte's deadline) an upload must average 8 KiB/s (64 kbit/s, 1/15 of a 1-Mbit/s phone link) or get 408,
    # so a trickling client is cut after 2 s instead of BODY_TIMEOUT_S.
    upload_grace_s: float = 2.0
    min_upload_bytes_per_s: int = 8 * 1024
    # Bytes of request bodies in memory at once, counted as they arrive: 64 phone photos of 4 MB, or 25 full bodies.
    receive_buffer_bytes: int = 256 * 1024 * 1024
    max_pixels: int = 50_000_000
    top_k: int = 5
    batch_max_size: int = 16
    # 0: no lingering. Requests pile up while a batch runs, which batches them anyway; waiting only idled the model
    # (loadtest, 2 CPUs: +10-20 % throughput and lower p50 at 4 and 16 clients without it).
    batch_max_wait_ms: float = 0.0
    queue_size: int = 64
    # The HTTP layer's own limits (serve/http_protocol.py), so the service is safe without a proxy in front. A request
    # line plus headers over 16 KiB (Node's and h11's default) or more than 100 headers (Apache's) get 431; a request
    # head not complete within 5 s after the connection opens or the previous answer (slowloris) gets 408.
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout_s: float = 5.0
    # SIGTERM: uploads still arriving are cut at once (503), the rest get this long to be answered; 8 s fits inside
    # the 10 s Cloud Run waits before SIGKILL.
    shutdown_grace_s: float = 8.0
    log_level: str = "info"
    # Where each answered /classify and each /feedback writes one JSON line (serve/prediction_log.py): a file path,
    # "-" for stdout, "" for none. Unset, it is "-" on Cloud Run (which sets K_SERVICE): stdout -> Cloud Logging.
    prediction_log: str = ""
    # Lines waiting for the log's writer thread; past it a line is dropped and counted, never waited for. 2048 lines
    # hold about 14 MB (the 32x32 input and the embedding of each) and cover a 4-s stall of the sink at 500 req/s.
    prediction_log_queue: int = 2048
    # The HMAC keys of the feedback tokens (contract/feedback_token.py), from FEEDBACK_KEY: comma-separated, the signing
    # key first, then the previous one, kept for one FEEDBACK_WINDOW_S after a rotation. Empty: a random key per start
    # (create_app says so once), which only a single local process can live with; on Cloud Run the start fails.
    feedback_keys: tuple[bytes, ...] = ()
    feedback_window_s: float = 3600.0  # how long after an answer its feedback is accepted
    # Feedback allowed per client: a bucket of FEEDBACK_BURST refilled at FEEDBACK_PER_MINUTE (serve/rate_limit.py).
    # A person answers once per picture, a few a minute at most; 2,000 forged corrections took 1.9 s before the limit.
    feedback_per_minute: float = 30.0
    feedback_burst: int = 20
    # Cloud Run sets K_SERVICE: stdout is the logging pipe, FEEDBACK_KEY is required, and the client is the right-most
    # X-Forwarded-For entry (serve/rate_limit.py says why that one).
    on_cloud_run: bool = False
    # A challenger model file answering SHADOW_SHARE of the requests after the champion's answer, for the prediction
    # log only (serve/shadow.py); unset: none.
    shadow_model_path: Path | None = None
    shadow_share: float = 0.1

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
        engine = get("ENGINE", str.lower, cls.engine)
        if engine not in ENGINES:
            raise SettingsError(f"ENGINE={engine!r} is not one of {', '.join(ENGINES)}")
        on_cloud_run = bool(env.get("K_SERVICE"))
        raw_keys = env.get("FEEDBACK_KEY", "").strip()
        if not raw_keys and on_cloud_run:
            raise SettingsError(
                "FEEDBACK_KEY is unset on Cloud Run: mount the feedback-key secret (cloudbuilds/setup-gcp.sh), which "
                "every instance shares, or feedback answered by one instance is refused by the others"
            )
        try:
            feedback_keys = feedback_token.parse_keys(raw_keys) if raw_keys else ()
        except ValueError as exc:
            raise SettingsError(f"FEEDBACK_KEY: {exc}") from None
        shadow_share = get("SHADOW_SHARE", float, cls.shadow_share, minimum=0)
        if shadow_share > 1:
            raise SettingsError(f"SHADOW_SHARE={shadow_share!r} is a share of the requests: at most 1")
        origins = tuple(o.strip().rstrip("/") for o in env.get("CORS_ORIGINS", "").split(",") if o.strip())
        return cls(
            host=get("HOST", str, cls.host),
            port=get("PORT", int, cls.port, minimum=0),
            model_path=get("MODEL_PATH", Path, cls.model_path),
            cors_origins=origins,
            ort_threads=get("ORT_THREADS", int, cls.ort_threads, minimum=0),
            ort_spinning=get("ORT_SPINNING", spinning_mode, cls.ort_spinning),
            engine=engine,
            decode_concurrency=get("DECODE_CONCURRENCY", int, cls.decode_concurrency, minimum=1),
            decode_memory_mib=get("DECODE_MEMORY_MIB", int, cls.decode_memory_mib, minimum=1),
            max_body_bytes=get("MAX_BODY_BYTES", int, cls.max_body_bytes, minimum=1),
            body_timeout_s=get("BODY_TIMEOUT_S", float, cls.body_timeout_s, minimum=0.001),
            upload_grace_s=get("UPLOAD_GRACE_S", float, cls.upload_grace_s, minimum=0.001),
            min_upload_bytes_per_s=get("MIN_UPLOAD_BYTES_PER_S", int, cls.min_upload_bytes_per_s, minimum=0),
            receive_buffer_bytes=get("RECEIVE_BUFFER_BYTES", int, cls.receive_buffer_bytes, minimum=1),
            max_pixels=get("MAX_PIXELS", int, cls.max_pixels, minimum=1),
            top_k=get("TOP_K", int, cls.top_k, minimum=1),
            batch_max_size=get("BATCH_MAX_SIZE", int, cls.batch_max_size, minimum=1),
            batch_max_wait_ms=get("BATCH_MAX_WAIT_MS", float, cls.batch_max_wait_ms, minimum=0),
            queue_size=get("QUEUE_SIZE", int, cls.queue_size, minimum=1),
            max_header_bytes=get("MAX_HEADER_BYTES", int, cls.max_header_bytes, minimum=256),
            max_headers=get("MAX_HEADERS", int, cls.max_headers, minimum=1),
            header_timeout_s=get("HEADER_TIMEOUT_S", float, cls.header_timeout_s, minimum=0.001),
            shutdown_grace_s=get("SHUTDOWN_GRACE_S", float, cls.shutdown_grace_s, minimum=0),
            log_level=log_level,
            prediction_log=env.get("PREDICTION_LOG", "-" if on_cloud_run else "").strip(),
            prediction_log_queue=get("PREDICTION_LOG_QUEUE", int, cls.prediction_log_queue, minimum=1),
            feedback_keys=feedback_keys,
            feedback_window_s=get("FEEDBACK_WINDOW_S", float, cls.feedback_window_s, minimum=1),
            feedback_per_minute=get("FEEDBACK_PER_MINUTE", float, cls.feedback_per_minute, minimum=0.001),
            feedback_burst=get("FEEDBACK_BURST", int, cls.feedback_burst, minimum=1),
            on_cloud_run=on_cloud_run,
            shadow_model_path=get("SHADOW_MODEL_PATH", Path, cls.shadow_model_path),
            shadow_share=shadow_share,
        )
