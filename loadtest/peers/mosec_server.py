"""Mosec as a peer of the service: `POST /inference` with the raw picture bytes answers what `POST /classify` does.
Run by the load test from its own venv (requirements-mosec.txt), with the service's settings in the environment.

How it is set up, and why that is fair:
- Mosec's own dynamic batching, in its Rust front: up to BATCH_MAX_SIZE requests (the service's default, 16) per
  call of `forward`, waiting at most BATCH_MAX_WAIT_MS after the first one (Mosec's minimum is 1 ms; the load test
  passes a few ms, as `--peer-wait-ms` says). Mosec waits that long whenever the batch is not full.
- One inference worker process (`num=1`), with onnxruntime's intra-op threads as the service sets them
  (ORT_THREADS, 0: one per core). The picture is decoded in that worker, request by request, as Mosec calls
  `deserialize` for each request of a batch before `forward`.
- Everything else is Mosec's default: its HTTP front (Rust, hyper via axum), its queue capacity (1024), its 3-s
  request timeout, its 10-MB body limit (the service's MAX_BODY_BYTES too). Readiness: Mosec binds its port only
  once every stage has a live worker (the model loaded), so `GET /` answers 200 only then.
- Answers are compact JSON (Mosec's default serializer indents).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from mosec import Server, Worker
from mosec.errors import DecodingError

from serve.core import Classifier, ImageRejected
from serve.settings import Settings

MOSEC_LOG_LEVELS = {"critical": "error", "error": "error", "warning": "warning", "info": "info"}


class Classify(Worker):
    def __init__(self) -> None:
        super().__init__()
        self.classifier = Classifier.from_env()

    def deserialize(self, data: bytes) -> Any:
        try:
            return self.classifier.decode(data)
        except ImageRejected as exc:  # Mosec answers 400 to the batch this request is in
            raise DecodingError(str(exc)) from None

    def forward(self, data: list) -> list:
        return self.classifier.classify(data)

    def serialize(self, data: Any) -> bytes:
        return json.dumps(data).encode()


def main() -> None:
    settings = Settings.from_env()
    # Mosec reads its own options from the command line; the service's HOST, PORT and LOG_LEVEL become them.
    level = MOSEC_LOG_LEVELS.get(settings.log_level, "debug")
    sys.argv[1:] = ["--address", settings.host, "--port", str(settings.port), "--log-level", level]
    server = Server()
    wait_ms = max(1, round(settings.batch_max_wait_ms))  # whole milliseconds, at least 1
    server.append_worker(Classify, num=1, max_batch_size=settings.batch_max_size, max_wait_time=wait_ms)
    server.run()


if __name__ == "__main__":
    main()
