"""LitServe as a peer of the service: `POST /predict` with the raw picture bytes answers what `POST /classify` does.
Run by the load test from its own venv (requirements-litserve.txt), with the service's settings in the environment.

How it is set up, and why that is fair:
- LitServe's own dynamic batching: up to BATCH_MAX_SIZE requests (the service's default, 16) per `predict`,
  collected for BATCH_MAX_WAIT_MS (`batch_timeout`; the load test passes a few ms, as `--peer-wait-ms` says).
  A batch that is not full waits until the window, opened when the worker starts collecting, closes; 0 would make
  the worker poll its queue without pause and burn a core.
- One inference worker process (`accelerator="cpu"`, `workers_per_device=1`), with onnxruntime's intra-op threads
  as the service sets them (ORT_THREADS, 0: one per core). The picture is decoded in that worker
  (`decode_request`, request by request, before the batch).
- Everything else is LitServe's default: its HTTP front (FastAPI on uvicorn, one API-server process per inference
  worker, uvloop and httptools as uvicorn[standard] brings them), its queues, its 30-s timeout. Readiness:
  `GET /health` answers 200 once the worker has loaded the model.
- The body is the raw picture, as the service takes it: FastAPI's `Body` of bytes (LitServe's default would parse
  JSON). No client file is written (`generate_client_file=False`).
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation as an object to build the route.

import os
import signal
from typing import Annotated, Any

import litserve as ls
import numpy as np
from fastapi import Body, HTTPException

from serve.core import Classifier, ImageRejected
from serve.settings import Settings

RawPicture = Annotated[bytes, Body(media_type="application/octet-stream")]


class ClassifyAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.classifier = Classifier.from_env()

    def decode_request(self, request: RawPicture) -> np.ndarray:
        try:
            return self.classifier.decode(request)
        except ImageRejected as exc:  # LitServe answers it for the batch this request is in
            raise HTTPException(422, str(exc)) from None

    def batch(self, inputs: list) -> list:
        return inputs

    def predict(self, x: list) -> list:
        return self.classifier.classify(x)

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def stop_on_sigterm() -> None:
    """LitServe shuts down gracefully on Ctrl-C (KeyboardInterrupt) and has no SIGTERM handler: without one, a
    SIGTERM would kill this process alone and leave its API-server and worker processes running."""
    main_pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # a forked child inherited it: die of the signal, as it would have without it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    settings = Settings.from_env()
    api = ClassifyAPI(max_batch_size=settings.batch_max_size, batch_timeout=settings.batch_max_wait_ms / 1000)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    stop_on_sigterm()
    server.run(host=settings.host, port=settings.port, log_level=settings.log_level, generate_client_file=False)


if __name__ == "__main__":
    main()
