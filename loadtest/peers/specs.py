"""The peers the load test knows, and how each is started: its program, route, readiness route and settings, run by
its own venv's python with the repository root on PYTHONPATH (so `serve` imports) and the service's settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from contract.paths import PROJECT_ROOT
from loadtest.peers.venv import ensure_venv
from loadtest.servers import ServerSpec, service_spec
from serve.settings import Settings

PEERS_DIR = Path(__file__).resolve().parent
# Each framework's batching window: long enough to gather the requests that arrive together, short next to an
# answer (a CIFAR request takes 1-3 ms of CPU). Mosec's shortest is 1 ms; LitServe's worker polls its queue in 1-ms
# steps within it, and with 0 it polls without pause. The service needs none (its batcher takes what piled up).
DEFAULT_WAIT_MS = 2.0
# The service's settings a peer honours as the service does (forwarded from --serve-env).
SHARED_SETTINGS = ("ORT_THREADS", "BATCH_MAX_SIZE", "TOP_K", "MAX_PIXELS")


@dataclass(frozen=True)
class Peer:
    name: str
    distribution: str  # the framework's name on PyPI, pinned in the requirements file
    module: str  # its program, run with `python -m`
    path: str  # the route the load goes to
    ready_path: str
    http_front: str  # what answers HTTP, as the framework ships it
    decode: str = "serve.imaging in the inference worker, request by request, before the batch"
    adaptive_window: bool = False  # the framework sizes its batching window itself: --peer-wait-ms means nothing

    @property
    def requirements(self) -> Path:
        return PEERS_DIR / f"requirements-{self.name}.txt"

    def version(self) -> str:
        """The framework's version pinned in the requirements file."""
        pattern = rf"^{re.escape(self.distribution)}(?:\[[\w,-]+\])?==(\S+)"  # extras allowed: ray[serve]==...
        match = re.search(pattern, self.requirements.read_text(), re.MULTILINE | re.IGNORECASE)
        if match is None:
            raise ValueError(f"{self.requirements} does not pin {self.distribution}")
        return match.group(1)


PEERS = {
    "mosec": Peer(
        "mosec",
        "mosec",
        "loadtest.peers.mosec_server",
        "/inference",
        "/",
        "Mosec's Rust server (hyper via axum), Python worker processes behind it over a Unix socket",
    ),
    "litserve": Peer(
        "litserve",
        "litserve",
        "loadtest.peers.litserve_server",
        "/predict",
        "/health",
        "FastAPI on uvicorn (uvloop, httptools) in one API-server process, the worker behind it over queues",
    ),
    "bentoml": Peer(
        "bentoml",
        "bentoml",
        "loadtest.peers.bentoml_server",
        "/classify",
        "/readyz",
        "uvicorn under BentoML's arbiter: a front service, the model service behind it over BentoML's own client",
        decode="serve.imaging in the front service's worker, on its event loop, before the model's batch",
        adaptive_window=True,
    ),
    "rayserve": Peer(
        "rayserve",
        "ray",
        "loadtest.peers.rayserve_server",
        "/classify",
        "/classify",
        "Ray Serve's proxy actor (uvicorn), the replica behind it over Ray's RPC; a local Ray instance",
        decode="serve.imaging in the replica, request by request, before the batch",
    ),
}


def peer_settings(peer: Peer, serve_env: dict[str, str], wait_ms: float) -> dict[str, str]:
    """The environment a peer reads its settings from: the service's names, the service's values."""
    env = {key: serve_env[key] for key in SHARED_SETTINGS if key in serve_env}
    env.setdefault("BATCH_MAX_SIZE", str(Settings.batch_max_size))
    env.setdefault("ORT_THREADS", str(Settings.ort_threads))
    env["BATCH_MAX_WAIT_MS"] = f"{wait_ms:g}"
    return env


def peer_spec(name: str, model: Path, serve_env: dict[str, str] | None = None, wait_ms: float = DEFAULT_WAIT_MS):
    """The ServerSpec of peer `name`, its venv built first if it is not there yet (minutes, once)."""
    peer = PEERS[name]
    python = ensure_venv(name, peer.requirements)
    settings = peer_settings(peer, serve_env or {}, wait_ms)
    # numpy's OpenBLAS threads would compete with onnxruntime's, as `python -m serve` says and sets.
    env = {"MODEL_PATH": str(model), "PYTHONPATH": str(PROJECT_ROOT), "OPENBLAS_NUM_THREADS": "1", **settings}
    threads = int(settings["ORT_THREADS"])
    description = {
        "framework": f"{peer.distribution} {peer.version()}",
        "route": f"POST {peer.path}",
        "ready": f"GET {peer.ready_path}",
        "max_batch_size": int(settings["BATCH_MAX_SIZE"]),
        "max_wait_ms": "adaptive" if peer.adaptive_window else wait_ms,
        "inference_workers": 1,
        "ort_threads": threads if threads else "0 (onnxruntime's default: one per core)",
        "decode": peer.decode,
        "http_front": peer.http_front,
        "requirements": str(peer.requirements.relative_to(PROJECT_ROOT)),
    }
    return ServerSpec(name, [str(python), "-m", peer.module], peer.path, env, peer.ready_path, description)


# The service's app under another HTTP server: it is the service in all but the front, so it takes the service's
# settings as they are (its batching included), not the frameworks' window.
GRANIAN = Peer(
    "granian",
    "granian",
    "loadtest.peers.granian_server",
    "/classify",
    "/readyz",
    "Granian's Rust server (hyper), one worker process running the service's Starlette app over ASGI",
)


def granian_spec(model: Path, serve_env: dict[str, str] | None = None) -> ServerSpec:
    """The service's own app and settings, served by Granian from its venv (built first if it is not there yet)."""
    python = ensure_venv(GRANIAN.name, GRANIAN.requirements)
    env = {"MODEL_PATH": str(model), "PYTHONPATH": str(PROJECT_ROOT), **(serve_env or {})}
    description = service_spec(model, serve_env).settings | {
        "framework": f"granian {GRANIAN.version()} + the service's app (its batching and settings unchanged)",
        "http_front": GRANIAN.http_front,
        "requirements": str(GRANIAN.requirements.relative_to(PROJECT_ROOT)),
    }
    return ServerSpec(
        GRANIAN.name, [str(python), "-m", GRANIAN.module], GRANIAN.path, env, GRANIAN.ready_path, description
    )
