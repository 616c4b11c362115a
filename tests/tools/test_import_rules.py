"""The rules of what may import what (docs/design.md) are import-linter contracts in pyproject.toml, which
`make lint` checks with `lint-imports`; here, that they keep, and that the torch-free service is among them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
TRAINING = {"train", "export", "torch", "torchvision", "lightning", "timm"}


def test_the_service_never_imports_training_code_directly_or_through_another_module():
    forbidden = set().union(*(c["forbidden_modules"] for c in CONTRACTS if "serve" in c["source_modules"]))
    assert forbidden >= TRAINING
    # What import-linter sees (its graph, grimp), so the rule is known to bite: serve's own imports are in it.
    graph = grimp.build_graph("serve", "contract", "train", "export", include_external_packages=True)
    upstream = graph.find_upstream_modules("serve", as_package=True)
    assert {"onnxruntime", "starlette"} <= upstream
    assert not upstream & TRAINING


def test_every_import_contract_is_kept():
    done = subprocess.run(
        [Path(sys.executable).with_name("lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in done.stdout
