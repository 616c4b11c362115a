"""The service's own app (routes, batcher, model, lifespan) under Granian, a Rust HTTP server, instead of uvicorn +
httptools: the HTTP layer measured on the same app (`python -m loadtest --targets service,granian`).

Without the head limits, the calm event loop and the graceful drain that serve/server.py adds to uvicorn, so it is
never what the image runs: only the question "would a faster HTTP front pay?".
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as serve/__main__.py, before numpy is imported


def app():
    """Granian's factory (its worker process calls it): the app `python -m serve` builds, with the same model."""
    from serve.app import create_app
    from serve.model import load_model
    from serve.settings import Settings

    settings = Settings.from_env()
    model = load_model(settings.model_path, threads=settings.ort_threads, engine=settings.engine)
    return create_app(settings, model=model)


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    from serve.settings import Settings

    settings = Settings.from_env()
    # One worker process and one Rust runtime thread, as uvicorn runs one process with one event loop.
    Granian(
        "loadtest.peers.granian_server:app",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=1,
        runtime_threads=1,
        log_level=LogLevels.warning,
    ).serve()


if __name__ == "__main__":
    main()
