"""Every setting of the service, read once from environment variables: one table of typed fields, each with its
variable, default, rule and the sentence that documents it. `python -m serve.settings` prints the table
docs/serving.md shows (a test keeps the two the same)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from contract import feedback_token

# The shipped model lives at <repo>/shipped/; computed from this package so it also holds in the image (/app).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "shipped" / "model.int8.onnx"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Who runs the model (serve/engine_choice.py): the fastest that passes the golden check, onnxruntime (the serve
# image's), or OpenVINO where installed (serve/openvino_engine.py).
AUTO, ONNXRUNTIME, OPENVINO = "auto", "onnxruntime", "openvino"
ENGINES = (AUTO, ONNXRUNTIME, OPENVINO)
CLOUD_RUN = "K_SERVICE"  # set by Cloud Run in every container it runs


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


def origins(raw: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


def feedback_keys(raw: str) -> tuple[bytes, ...]:
    return feedback_token.parse_keys(raw)


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def setting(
    default: Any,
    doc: str,
    *,
    parse: Callable[[str], Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    shown: str | None = None,
    env: str | None = None,
    secret: bool = False,
) -> Any:
    """A field read from the variable `env` (default: the field's name in capitals) with `parse` (default: the
    default's type), kept within `minimum`..`maximum` or `choices`; `doc` and `shown` (the default as the docs write
    it) make its row of the table; a `secret` value is never repeated in an error."""
    rule = {"doc": doc, "parse": parse or type(default), "minimum": minimum, "maximum": maximum, "choices": choices}
    return field(default=default, metadata=rule | {"shown": shown, "env": env, "secret": secret})


@dataclass(frozen=True)
class Settings:
    port: int = setting(8000, "TCP port (Cloud Run sets it)", minimum=0)
    # Cloud Run routes to the container's external interface.
    host: str = setting(
        "0.0.0.0", "interface to listen on; Cloud Run needs all interfaces, local runs pass `127.0.0.1`"
    )
    model_path: Path = setting(
        DEFAULT_MODEL_PATH,
        (
            "the ONNX model; the default is computed from the package's location, so it is "
            "`/app/shipped/model.int8.onnx` in the image"
        ),
        parse=Path,
        shown="`<repo>/shipped/model.int8.onnx`",
    )
    cors_origins: tuple[str, ...] = setting(
        (),
        (
            "comma-separated origins allowed to call the API from a browser (the site's origin, e.g. "
            "`https://site-xyz.a.run.app`); methods GET/POST/OPTIONS, the htmx request headers (`HX-Request`, "
            "`HX-Current-URL`, `HX-Target`, `HX-Trigger`, `HX-Trigger-Name`, `HX-Boosted`, `HX-Prompt`), "
            "`Content-Type` (the page posts `/feedback` as JSON) and `X-Request-ID` are allowed; `Retry-After` and "
            "`X-Request-ID` are exposed. Empty: no CORS headers at all; `*`: any origin"
        ),
        parse=origins,
        shown="*(none)*",
    )
    ort_threads: int = setting(
        0, "onnxruntime intra-op threads; `0` lets onnxruntime choose (one per physical core)", minimum=0
    )
    ort_spinning: str = setting(
        "auto",
        (
            "whether idle onnxruntime threads spin (answering the next batch at once) or sleep. `auto`: they sleep, "
            "and spin while requests come one at a time: after 32 batches in a row of one request with nothing "
            "waiting the session is rebuilt spinning (in a thread of its own, then swapped in between batches), and "
            "rebuilt sleeping once a quarter of the last 32 had company; at most one switch per 5 s "
            "([`serve/runtime/spinning.py`](../serve/runtime/spinning.py)). On 2 shared cores, against `0`, 3 runs "
            "each in "
            "alternation: one client 1.12× (CIFAR JPEGs) and 1.14× (640×480 photos), 16 and 64 clients unchanged, "
            "while `1` (always spin) lost 7 % and 13 % there; a switch holds a second session for a moment (RSS peak "
            "143 against 111 MB, back to 105 after it) and spinning costs ~30 % more CPU per lone request "
            "([A/B](../benchmarks/ab/README.md#spinning-while-requests-come-alone-ort_spinningauto)). `0`/`off`: "
            "always sleep; `1`/`on`: always spin, for a host where each thread has a core of its own. With "
            "`ORT_THREADS=1` or `ENGINE=openvino` there is no onnxruntime thread to spin"
        ),
        parse=spinning_mode,
    )
    engine: str = setting(
        AUTO,
        (
            "who runs the model. `auto`: the fastest engine that passes the file's golden check on this CPU, timed "
            "at start (OpenVINO is tried only where the CPU has VNNI or AMX and it is installed, which the image "
            "does not; onnxruntime otherwise, and for a file without golden answers); `onnxruntime`; `openvino` "
            "(`requirements-serve-openvino.txt`, 180 MB more). The file is opened and checked by onnxruntime "
            "either way, and the chosen engine must answer the file's golden pictures within its tolerance before "
            "the service is ready: a named engine that fails stops the start with one line, `auto` skips it. "
            "`GET /model` says which engine runs it and why "
            "([performance](performance.md#another-engine-openvino))"
        ),
        parse=str.lower,
        choices=ENGINES,
    )
    decode_concurrency: int = setting(
        2, "images decoded at once in worker threads (thumbnails are decoded on the event loop instead)", minimum=1
    )
    # 1 GiB: with the model (~200 MB) and the queued uploads it fits Cloud Run's 2 GiB; one 50-MP WebP, the dearest
    # upload (~980 MiB), still fits alone.
    decode_memory_mib: int = setting(
        1024,
        (
            "MiB that the decodes in flight may take together, each its measured worst case (below); an image that "
            "needs more than all of it gets `413`"
        ),
        minimum=1,
    )
    max_body_bytes: int = setting(
        10 * 1024 * 1024, "the largest request body; bigger gets `413`", minimum=1, shown="`10485760` (10 MiB)"
    )
    body_timeout_s: float = setting(
        20.0,
        (
            "seconds the whole upload may take to arrive; slower gets `408` (below Cloud Run's 30-s request timeout, "
            "so the client hears why)"
        ),
        minimum=0.001,
    )
    upload_grace_s: float = setting(
        2.0,
        "seconds an upload has before the minimum pace applies; its first byte must come within them",
        minimum=0.001,
    )
    min_upload_bytes_per_s: int = setting(
        8 * 1024,
        (
            "the average pace, since its start, an upload must keep once the grace is over, or `408` (a slow phone "
            "link sends 15 times that; [reliability](#reliability)); `0`: none"
        ),
        minimum=0,
    )
    receive_buffer_bytes: int = setting(
        256 * 1024 * 1024,
        (
            "bytes of request bodies in memory at once, counted as they arrive; an upload with no room gets `503` + "
            "`Retry-After`"
        ),
        minimum=1,
        shown="`268435456` (256 MiB)",
    )
    max_pixels: int = setting(
        50_000_000,
        (
            "the most pixels an image may declare (a 48-MP phone photo fits); more gets `413`. AVIF gets half, since "
            "decoding it takes up to twice the memory per pixel. Pillow's own bomb guard (about 179 MP) applies on "
            "top"
        ),
        minimum=1,
    )
    top_k: int = setting(5, "entries in `top_k` (at most the number of labels)", minimum=1)
    batch_max_size: int = setting(16, "the most images in one onnxruntime call", minimum=1)
    batch_max_wait_ms: float = setting(
        0.0,
        (
            "how long a batch that already has company waits for more (up to `BATCH_MAX_SIZE`); a request alone never"
            " waits. 0: requests that queue while a batch runs form the next batch, which measured faster than "
            "lingering ([tuning](performance.md#tuning-what-was-tried-what-was-kept))"
        ),
        minimum=0,
    )
    queue_size: int = setting(
        64,
        (
            "classify requests whose upload is in that may be decoding or waiting for inference at once; when they "
            "are all there, the next gets `503` + `Retry-After` without its body being read (receiving is bounded "
            "apart: `RECEIVE_BUFFER_BYTES`)"
        ),
        minimum=1,
    )
    max_header_bytes: int = setting(
        16 * 1024,
        (
            "the most bytes of a request head (request line and headers); more gets `431` "
            "([reliability](#reliability): httptools has no limit of its own). 16 KiB is Node's and h11's default"
        ),
        minimum=256,
    )
    max_headers: int = setting(100, "the most request headers (Apache's default); more gets `431`", minimum=1)
    header_timeout_s: float = setting(
        5.0,
        (
            "seconds from the connection opening, or from the previous answer on a kept-alive connection, to the end "
            "of the request head; a half-sent head (slowloris) gets `408` and is closed"
        ),
        minimum=0.001,
    )
    shutdown_grace_s: float = setting(
        8.0,
        (
            "on `SIGTERM`, uploads still arriving are cut at once with `503` `shutting_down` "
            "([`serve/draining.py`](../serve/draining.py)); requests already received have this long to be answered. "
            "8 s fits in the 10 s Cloud Run waits before `SIGKILL`"
        ),
        minimum=0,
    )
    # Unset, "-" on Cloud Run (from_env): stdout is its logging pipe.
    prediction_log: str = setting(
        "",
        (
            "where the [prediction log](#prediction-log) goes: a file path (appended to), `-` for stdout, empty for "
            "none. Unset, it is `-` when `K_SERVICE` is set (Cloud Run sets it), so on Cloud Run the lines reach "
            "Cloud Logging; locally there is no log unless asked for. A path that cannot be written stops the start "
            "(exit 2, one line)"
        ),
        shown="*(none)*; `-` on Cloud Run",
    )
    # 2048 lines hold about 14 MB (the 32x32 input and the embedding of each) and cover a 4-s stall of the sink at
    # 500 req/s.
    prediction_log_queue: int = setting(
        2048,
        (
            "log lines waiting for the writer thread; past it a line is dropped and counted "
            "(`serve_prediction_log_dropped_total`), never waited for"
        ),
        minimum=1,
    )
    feedback_keys: tuple[bytes, ...] = setting(
        (),
        (
            "the HMAC key(s) of the feedback tokens ([`contract/feedback_token.py`](../contract/feedback_token.py)): "
            "comma-separated, each at least 32 characters, the first signs and all are accepted (a rotation keeps the"
            " previous one for a window). Shared by every instance: on Cloud Run a Secret Manager secret "
            "([deploy](deploy.md#the-feedback-key)), and unset there (`K_SERVICE` set) the start fails; unset "
            "locally, a random key per start, said once in the log"
        ),
        parse=feedback_keys,
        shown="unset",
        env="FEEDBACK_KEY",
        secret=True,
    )
    feedback_window_s: float = setting(
        3600.0, "how long after an answer its feedback is accepted (`410` `feedback_expired` after)", minimum=1
    )
    feedback_per_minute: float = setting(
        30.0,
        (
            "feedback per client: a bucket of `FEEDBACK_BURST` refilled at `FEEDBACK_PER_MINUTE`, kept for the 10,000"
            " clients seen last ([`serve/rate_limit.py`](../serve/rate_limit.py)); then `429`. On Cloud Run the "
            "client is the right-most `X-Forwarded-For` address, the one Google's front end appended (those to its "
            "left are the client's own words); elsewhere the peer address"
        ),
        minimum=0.001,
    )
    feedback_burst: int = setting(
        20,
        (
            "feedback per client: a bucket of `FEEDBACK_BURST` refilled at `FEEDBACK_PER_MINUTE`, kept for the 10,000"
            " clients seen last ([`serve/rate_limit.py`](../serve/rate_limit.py)); then `429`. On Cloud Run the "
            "client is the right-most `X-Forwarded-For` address, the one Google's front end appended (those to its "
            "left are the client's own words); elsewhere the peer address"
        ),
        minimum=1,
    )
    shadow_model_path: Path | None = setting(
        None,
        (
            "a challenger model file ([`serve/shadow.py`](../serve/shadow.py)): it answers `SHADOW_SHARE` of the "
            "requests *after* the person's answer is made, in a thread of its own at a lower CPU priority on one "
            "onnxruntime thread, and its answer (`version`, `label`, `score`, `inference_ms` of its batch, and "
            "`outlier`, `outlier_score` when its file has them) joins the request's prediction-log line as `shadow`; "
            "`serve_shadow_answers_total{outcome}` counts `agree`, `disagree` and `dropped` (requests waiting for the"
            " champion, or its own queue of `QUEUE_SIZE` full: the challenger is dropped first). A file that does not"
            " load, or reads other pictures or answers other labels than the champion, stops the start (exit 2, one "
            "line). Compare the two on the log with `python -m monitor compare` "
            "([deploy](deploy.md#releasing-a-model))"
        ),
        parse=Path,
        shown="unset",
    )
    shadow_share: float = setting(0.1, "the share (0-1) of requests the challenger answers", minimum=0, maximum=1)
    log_level: str = setting(
        "info",
        "`critical`, `error`, `warning`, `info`, `debug` or `trace` (uvicorn's and the service's logs)",
        parse=str.lower,
        choices=LOG_LEVELS,
    )
    # Cloud Run sets K_SERVICE: stdout is the logging pipe, FEEDBACK_KEY is required, and the client is the right-most
    # X-Forwarded-For entry (serve/rate_limit.py says why that one).
    on_cloud_run: bool = setting(
        False,
        "set by Cloud Run (the service's name): the defaults and rules of Cloud Run apply",
        parse=bool,
        env=CLOUD_RUN,
        shown="unset",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {}
        for item in fields(cls):
            raw = env.get(variable(item), "").strip()
            if raw:
                values[item.name] = read(variable(item), raw, item.metadata)
        settings = cls(**values)
        if settings.on_cloud_run and "PREDICTION_LOG" not in env:
            settings = cls(**values | {"prediction_log": "-"})
        if settings.on_cloud_run and not settings.feedback_keys:
            raise SettingsError(
                "FEEDBACK_KEY is unset on Cloud Run: mount the feedback-key secret (cloudbuilds/setup-gcp.sh), which "
                "every instance shares, or feedback answered by one instance is refused by the others"
            )
        return settings


def variable(item: Any) -> str:
    return item.metadata["env"] or item.name.upper()


def read(name: str, raw: str, rule: Mapping[str, Any]) -> Any:
    parse = rule["parse"]
    try:
        value = parse(raw)
    except ValueError as exc:
        if rule["secret"]:  # never echo a key into the log
            raise SettingsError(f"{name}: {exc}") from None
        raise SettingsError(f"{name}={raw!r} is not a valid {parse.__name__} value") from None
    if rule["choices"] and value not in rule["choices"]:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(rule['choices'])}")
    if rule["minimum"] is not None and value < rule["minimum"]:
        raise SettingsError(f"{name}={raw!r} must be at least {rule['minimum']}")
    if rule["maximum"] is not None and value > rule["maximum"]:
        raise SettingsError(f"{name}={raw!r} must be at most {rule['maximum']}")
    return value


def markdown_table() -> str:
    """The settings as docs/serving.md shows them: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for item in fields(Settings):
        default = item.default
        shown = item.metadata["shown"] or (f"`{default:g}`" if isinstance(default, float) else f"`{default}`")
        rows.append(f"| `{variable(item)}` | {shown} | {item.metadata['doc']} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
