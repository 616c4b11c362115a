"""`python -m serve`: read the settings, load the model (or exit with one line saying why), run uvicorn."""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a thread per core for a matrix product as small as the prediction log's embedding projection
# (32 x 512 by 512 x 32), and they compete with onnxruntime's: 0.58 ms a batch against 0.03 ms on one thread. Set
# before numpy is first imported (below); an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import logging
import signal
import sys

from serve import log_queue
from serve.app import create_app
from serve.log_writer import check_target
from serve.model import ModelLoadError, load_configured, load_shadow
from serve.server import build_server
from serve.settings import Settings, SettingsError
from serve.shadow import check_challenger


def main() -> int:
    try:
        settings = Settings.from_env()
        # Loading before the server starts turns a bad model file into one clear line, not a traceback.
        model = load_configured(settings)
        shadow_model = None
        if settings.shadow_model_path is not None:
            shadow_model = load_shadow(settings)
            check_challenger(model, shadow_model)
        check_target(settings.prediction_log)
    except (SettingsError, ModelLoadError) as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"serve: PREDICTION_LOG={settings.prediction_log!r} cannot be written ({exc.strerror})", file=sys.stderr)
        return 2
    app = create_app(settings, model=model, shadow_model=shadow_model)
    level = settings.log_level.upper() if settings.log_level != "trace" else logging.DEBUG
    listener = log_queue.start(level, app.state.service.metrics.log_records_dropped.inc)
    # uvicorn re-raises the SIGTERM/SIGINT it handled once the graceful shutdown is over; by then the
    # shutdown was clean, so let main() return 0 instead of dying by the signal (exit 143) or a traceback.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        build_server(app, settings).run()
    finally:
        listener.stop()  # the records still queued, then the writer thread ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
