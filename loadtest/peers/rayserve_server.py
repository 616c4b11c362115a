"""Ray Serve as a peer of the service: `POST /classify` with the raw picture bytes answers what the service's does.
Run by the load test from its own venv (requirements-rayserve.txt), with the service's settings in the environment.

How it is set up, and why that is fair:
- Ray Serve's own dynamic batching, `@serve.batch`: up to BATCH_MAX_SIZE requests (the service's default, 16) per
  call, waiting at most BATCH_MAX_WAIT_MS for a batch to fill (`batch_wait_timeout_s`; the load test passes a few
  ms, as `--peer-wait-ms` says).
- One replica (`num_replicas=1`) taking up to QUEUE_SIZE requests at once (`max_ongoing_requests`, the service's
  queue bound, 64): Ray's default of 5 would cap every batch at 5. The picture is decoded in the replica, request by
  request, before it joins a batch; onnxruntime's intra-op threads as the service sets them (ORT_THREADS, 0: one
  per core).
- A local Ray instance started by this program with this machine's CPUs, without the dashboard (it would only add
  processes); everything else is Ray Serve's default: its HTTP proxy actor (uvicorn), its router, its timeouts.
  Readiness: `GET /classify` answers 200 from the replica once the application is deployed and this program
  handles SIGTERM itself. Usage statistics off
  (no network here).
"""

from __future__ import annotations

import os
import signal
import threading

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before ray is imported: it reads this at import

import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from serve.core import Classifier, ImageRejected
from serve.settings import Settings

SETTINGS = Settings.from_env()


@serve.deployment(num_replicas=1, max_ongoing_requests=SETTINGS.queue_size)
class Classify:
    def __init__(self) -> None:
        self.classifier = Classifier.from_settings(SETTINGS)
        self.ready = False  # set by the driver once it can be stopped cleanly (main)

    def mark_ready(self) -> None:
        self.ready = True

    @serve.batch(max_batch_size=SETTINGS.batch_max_size, batch_wait_timeout_s=SETTINGS.batch_max_wait_ms / 1000)
    async def answer(self, pictures: list[np.ndarray]) -> list[dict]:
        return self.classifier.classify(pictures)

    async def __call__(self, request: Request) -> Response:
        if request.method == "GET":
            return PlainTextResponse("ready" if self.ready else "starting", status_code=200 if self.ready else 503)
        try:
            picture = self.classifier.decode(await request.body())
        except ImageRejected as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(await self.answer(picture))


def main() -> None:
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": SETTINGS.host, "port": SETTINGS.port})
    handle = serve.run(Classify.bind(), route_prefix="/classify")
    # Only now: Ray's core installs its own SIGTERM handler, which exits with code 15 and leaves Ray's processes
    # to atexit. Readiness waits for this one, so that a stop from then on is a clean shutdown.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    handle.mark_ready.remote().result()
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
