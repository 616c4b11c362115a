"""Each peer's own venv, under build/peer-venvs/<name>/: `python -m venv`, then `pip install -r` the peer's pinned
requirements. Built once: a marker file in the venv holds a fingerprint of what was installed (the requirements, the
serve pins they constrain to, the interpreter), and a venv whose marker matches is reused as it is."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from contract.paths import PROJECT_ROOT

VENVS_DIR = PROJECT_ROOT / "build" / "peer-venvs"
SERVE_REQUIREMENTS = PROJECT_ROOT / "requirements-serve.txt"  # the constraints every peer's file names
MARKER = "installed.sha256"
PIP_TIMEOUT_S = 900


def fingerprint(requirements: Path) -> str:
    digest = hashlib.sha256()
    for path in (requirements, SERVE_REQUIREMENTS):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())  # the base interpreter the venv is made from
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per venv (two load tests, or a test beside a load test)."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_current(venv: Path, requirements: Path) -> bool:
    marker = venv / MARKER
    return python_of(venv).is_file() and marker.is_file() and marker.read_text().strip() == fingerprint(requirements)


def ensure_venv(name: str, requirements: Path, root: Path = VENVS_DIR) -> Path:
    """The python of the venv `name`, built from `requirements` unless it already was; raises RuntimeError with
    pip's last lines when the install fails (pip's whole output is in <root>/<name>.pip.log)."""
    venv = root / name
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{name}.lock"):
        if is_current(venv, requirements):
            return python_of(venv)
        print(f"building the {name} venv in {venv} from {requirements.name}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        log = root / f"{name}.pip.log"
        command = [str(python_of(venv)), "-m", "pip", "install", "--no-input", "-r", str(requirements)]
        with log.open("w") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=PIP_TIMEOUT_S, check=False)
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"pip could not install {requirements} into {venv} (exit {done.returncode}):\n{tail}")
        (venv / MARKER).write_text(fingerprint(requirements) + "\n")
    return python_of(venv)
