"""Run the product locally: the classifier service and the website, each in its own process, on 127.0.0.1.

    python run_local.py [--port 8000] [--site-port 8080] [--model shipped/model.int8.onnx]

`make run` runs this with the serving venv. The service (`python -m serve`) gets HOST=127.0.0.1, PORT,
CORS_ORIGINS set to the site's origin and PREDICTION_LOG=build/run/predictions.jsonl (answers and feedback; unless
set); the site (site/server.py) gets the service's URL as API_URL.
Environment: PORT, SITE_PORT, MODEL_PATH (flags win; other serve settings in the environment pass through).
Ctrl-C or SIGTERM stops both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PREDICTION_LOG = ROOT / "build" / "run" / "predictions.jsonl"  # `python -m monitor drift|harvest` reads it


class Stop(Exception):
    """Raised by the signal handlers to leave the wait loop."""


def _stop(signum, frame):
    raise Stop(signum)


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return 0


def wait_until_ready(url: str, processes: dict[str, subprocess.Popen], timeout: float) -> bool:
    """Poll url until it answers 200; False if a process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in processes.items():
            if proc.poll() is not None:
                print(f"run: the {name} exited with code {proc.returncode}", file=sys.stderr)
                return False
        if _get(url) == 200:
            return True
        time.sleep(0.25)
    print(f"run: {url} was not ready after {timeout:.0f} s", file=sys.stderr)
    return False


def stop_all(processes: dict[str, subprocess.Popen], grace: float = 10.0) -> None:
    for proc in processes.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in processes.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")), help="service port")
    parser.add_argument("--site-port", type=int, default=int(os.environ.get("SITE_PORT", "8080")), help="website port")
    parser.add_argument("--model", default=os.environ.get("MODEL_PATH"), help="ONNX model (default: serve's)")
    parser.add_argument(
        "--ready-timeout", type=float, default=120.0, help="seconds to wait for the model to load and warm up"
    )
    args = parser.parse_args(argv)

    api_url = f"http://{HOST}:{args.port}"
    site_url = f"http://{HOST}:{args.site_port}"
    # The page may be opened as 127.0.0.1 or localhost: both are the site's origin.
    origins = f"{site_url},http://localhost:{args.site_port}"

    serve_env = dict(os.environ, HOST=HOST, PORT=str(args.port), CORS_ORIGINS=origins)
    # Feedback is kept (and answered 202) only where there is a log: locally a file, unless the environment says.
    serve_env.setdefault("PREDICTION_LOG", str(PREDICTION_LOG))
    if args.model:
        serve_env["MODEL_PATH"] = args.model
    site_env = dict(os.environ, API_URL=api_url)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    processes: dict[str, subprocess.Popen] = {}
    try:
        processes["service"] = subprocess.Popen([sys.executable, "-m", "serve"], cwd=ROOT, env=serve_env)
        processes["site"] = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "site" / "server.py"),
                "--host",
                HOST,
                "--port",
                str(args.site_port),
                "--api-url",
                api_url,
                "--quiet",
            ],
            cwd=ROOT,
            env=site_env,
        )
        ready = wait_until_ready(f"{api_url}/readyz", processes, args.ready_timeout) and wait_until_ready(
            f"{site_url}/", processes, 15.0
        )
        if not ready:
            return 1
        print(
            f"\n  Website:  {site_url}/\n  Service:  {api_url}/  (API docs: {api_url}/docs)\n\n"
            "  Press Ctrl-C to stop both.\n",
            flush=True,
        )
        while True:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    print(f"run: the {name} stopped (exit code {proc.returncode})", file=sys.stderr)
                    return proc.returncode or 1
            time.sleep(0.5)
    except Stop:
        print("\nrun: stopping the service and the site", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(processes)


if __name__ == "__main__":
    sys.exit(main())
