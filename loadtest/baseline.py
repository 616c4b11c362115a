"""The baselines the service is measured against, in one small Starlette app run by uvicorn like `python -m serve`.

- naive (`--checkpoint`): what an MLOps course project typically ships. The PyTorch eager fp32 model straight from
  the weights (the shipped model's: WEIGHTS, committed in git; or a Lightning checkpoint of `python -m train`, both
  loaded by export.checkpoint), and an `async def` handler that fully decodes the upload with Pillow, squashes it to
  32x32 and runs the model: one request at a time, no batching. Of the two usual shapes it is the faster one here:
  a sync handler (Starlette's thread pool, a lock around the model) measured 30-32 against 50-56 requests/s at one
  client, since each pool thread that calls torch gets its own OpenMP team.
- noop: `POST /noop` reads the body and answers a constant JSON: the floor of HTTP + framework on this machine.

`python -m loadtest.baseline [--checkpoint WEIGHTS]` (PORT from the environment); binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from pathlib import Path

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from contract.paths import SHIPPED_DIR

# The shipped model's network weights, the same the export of shipped/model.int8.onnx starts from.
WEIGHTS = SHIPPED_DIR / "weights" / "resnet18-cifar10.safetensors"

NOOP_ANSWER = {"label": "noop", "score": 1.0, "top_k": [], "model": {"name": "noop", "version": "0"}}


class NaiveModel:
    def __init__(self, checkpoint: Path = WEIGHTS) -> None:
        import torch  # only the naive server pays for importing torch

        from export.checkpoint import load

        loaded = load(checkpoint)
        self.torch, self.net, self.labels = torch, loaded.net, loaded.labels
        self.info = {"name": loaded.arch, "version": "eager-fp32", "torch_threads": torch.get_num_threads()}

    def predict(self, data: bytes) -> dict:
        from PIL import Image

        image = Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32))
        batch = self.torch.from_numpy(np.asarray(image)).unsqueeze(0)  # the net takes uint8 NHWC itself
        with self.torch.inference_mode():
            probs = self.torch.softmax(self.net(batch), dim=1)[0]
        scores, indices = probs.topk(5)
        top = [{"label": self.labels[i], "score": float(s)} for s, i in zip(scores, indices, strict=True)]
        return {**top[0], "top_k": top, "model": {"name": self.info["name"], "version": self.info["version"]}}


def create_app(model: NaiveModel | None) -> Starlette:
    async def classify(request: Request) -> JSONResponse:
        return JSONResponse(model.predict(await request.body()))  # blocks the event loop: one request at a time

    async def noop(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(NOOP_ANSWER)

    async def readyz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ready", **(model.info if model else {})})

    routes = [Route("/noop", noop, methods=["POST"]), Route("/readyz", readyz)]
    if model is not None:
        routes.append(Route("/classify", classify, methods=["POST"]))
    return Starlette(routes=routes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.baseline", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help=f"weights (e.g. {WEIGHTS.relative_to(SHIPPED_DIR.parent)}) or a Lightning "
        "checkpoint: serve it naively on /classify",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    args = parser.parse_args(argv)
    app = create_app(NaiveModel(args.checkpoint) if args.checkpoint else None)
    for signum in (signal.SIGTERM, signal.SIGINT):  # as in serve: exit 0 after uvicorn's graceful shutdown
        signal.signal(signum, lambda *_: None)
    level = os.environ.get("LOG_LEVEL", "warning")
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level=level, http="httptools", server_header=False, lifespan="on"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
