#!/usr/bin/env bash
# The serve tests inside .venv-serve, a venv built from requirements-serve.lock (+ requirements-serve-test.txt)
# alone (`make venv-serve`): proves the service needs nothing else, that torch is not there, and reports its size.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv-serve/bin/python
if [[ ! -x $PY ]]; then
    echo "no $PY: run 'make venv-serve' first" >&2
    exit 1
fi

if "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
    echo "FAIL: torch is installed in .venv-serve; requirements-serve*.txt must stay torch-free" >&2
    exit 1
fi
echo "torch: not installed in .venv-serve (good)"

"$PY" -m pytest tests/serve -q -p no:cacheprovider "$@"

# Size: the whole site-packages, and the part the serving image needs (requirements-serve.txt and what it pulls in).
"$PY" - <<'PY'
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

site = Path(sysconfig.get_paths()["purelib"])
total = sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())

def dist_size(dist):
    return sum(f.size or 0 for f in dist.files or [])

lines = Path("requirements-serve.txt").read_text().splitlines()
todo = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
seen = set()
while todo:
    req = todo.pop()
    name = canonicalize_name(req.name)
    if name in seen:
        continue
    seen.add(name)
    dist = metadata.distribution(name)
    for spec in dist.requires or []:
        dep = Requirement(spec)
        if dep.marker is None or dep.marker.evaluate({"extra": ""}):
            todo.append(dep)
serving = sum(dist_size(metadata.distribution(name)) for name in seen)
mb = 1024 * 1024
# The goal is for what the serving image installs (these dependencies alone, pip removed), not for the test tools.
print(f"serving dependencies ({len(seen)} distributions, what the image installs): {serving / mb:.0f} MB "
      f"(goal <= 200 MB); the whole serve venv: {total / mb:.0f} MB with test tools and pip/setuptools")
PY
