"""BentoML as a peer of the service: `POST /classify` with the raw picture bytes answers what the service's does.
Run by the load test from its own venv (requirements-bentoml.txt), with the service's settings in the environment.

How it is set up, and why that is fair:
- BentoML's own adaptive batching, in the shape its documentation gives for pre-processing before a batched model:
  a front service (`Front`, one worker) takes the upload and decodes it (serve.imaging, on its event loop), then
  calls the model service (`Model`, one worker) through `bentoml.depends`; the model's `classify` is batchable, so
  BentoML's dispatcher merges the calls that arrive together, up to BATCH_MAX_SIZE (the service's default, 16).
  Its window is not a fixed wait: the dispatcher regresses its own batch times and waits only as long as it
  predicts worthwhile. `max_latency_ms` is a deadline past which it answers 503, not a window, so it stays at a
  generous 10 s (the service's own request timeout is 3 s per stage; the load test never gets near).
- onnxruntime's intra-op threads as the service sets them (ORT_THREADS, 0: one per core).
- Everything else is BentoML's default: its HTTP server (uvicorn under its circus arbiter, one process per service),
  its internal client between the two services, its metrics. Readiness: `GET /readyz` answers 200 once both
  services have loaded. Usage tracking off (no network here); its home under build/ (it writes there).
"""

# No `from __future__ import annotations`: BentoML reads the API methods' annotations as objects.

import os
import sys
from pathlib import Path

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument

from serve.core import Classifier, ImageRejected
from serve.settings import Settings

SETTINGS = Settings.from_env()
DEADLINE_MS = 10_000


@bentoml.service(workers=1)
class Model:
    def __init__(self) -> None:
        self.classifier = Classifier.from_settings(SETTINGS)

    @bentoml.api(batchable=True, max_batch_size=SETTINGS.batch_max_size, max_latency_ms=DEADLINE_MS)
    def classify(self, pictures: np.ndarray) -> list:
        """uint8 [N, H, W, 3], the calls of a batch stacked by the dispatcher -> one answer per row."""
        return self.classifier.classify(list(pictures))


@bentoml.service(workers=1)
class Front:
    model = bentoml.depends(Model)

    def __init__(self) -> None:
        # The same decode as the model's worker would do, without a second model in memory: size and policy only.
        self.decoder = Classifier.decoder(SETTINGS)

    @bentoml.api(route="/classify")
    async def classify(self, data: bytes, /) -> dict:
        try:
            picture = self.decoder(data)
        except ImageRejected as exc:
            raise InvalidArgument(str(exc)) from None  # BentoML answers 400
        (answer,) = await self.model.to_async.classify(picture[np.newaxis])
        return answer


def main() -> None:
    """`bentoml serve` on the service's HOST and PORT, replacing this process (its arbiter then handles SIGTERM)."""
    home = Path(__file__).resolve().parents[2] / "build" / "bentoml-home"
    os.environ.setdefault("BENTOML_HOME", str(home))
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    argv = [sys.executable, "-m", "bentoml", "serve", "loadtest.peers.bentoml_server:Front"]
    argv += ["--host", SETTINGS.host, "--port", str(SETTINGS.port), "--working-dir", str(Path.cwd())]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
