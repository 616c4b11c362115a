"""`python -m serve`: read the settings, load the model (or exit with one line saying why), run uvicorn."""

from __future__ import annotations

import logging
import signal
import sys

import uvicorn

from serve.app import create_app
from serve.model import ModelLoadError, load_model
from serve.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
        # Loading before the server starts turns a bad model file into one clear line, not a traceback.
        model = load_model(settings.model_path, threads=settings.ort_threads)
    except (SettingsError, ModelLoadError) as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "trace" else logging.DEBUG)
    app = create_app(settings, model=model)
    # uvicorn re-raises the SIGTERM/SIGINT it handled once the graceful shutdown is over; by then the
    # shutdown was clean, so let main() return 0 instead of dying by the signal (exit 143) or a traceback.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http="httptools",  # named, not "auto": a missing parser fails the start instead of falling back to h11
        server_header=False,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
