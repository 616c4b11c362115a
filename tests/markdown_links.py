"""Links that a test finds outside Markdown (an alert's runbook URL, a policy's documentation) checked by the
project's link checker, remark-validate-links (tools/lint.sh runs it on every Markdown file; `make linters`
installs it into .tools/npm)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from contract.paths import PROJECT_ROOT

NPM = PROJECT_ROOT / ".tools" / "npm" / "node_modules"
REMARK = NPM / ".bin" / "remark"
PLUGIN = NPM / "remark-validate-links" / "index.js"


def broken_links(targets: list[str], work_dir: Path) -> str:
    """remark-validate-links' findings on `targets` (paths from the repository root, with an optional #anchor),
    empty when every file and heading exists. The Markdown files named are read for their headings."""
    assert REMARK.is_file(), f"{REMARK} missing: run `make linters` (tools/setup-linters.sh)"
    page = work_dir / "links.md"
    relative = [os.path.relpath(PROJECT_ROOT / target, work_dir) for target in targets]
    page.write_text("".join(f"[{n}]({path})\n\n" for n, path in enumerate(relative)), encoding="utf-8")
    pages = sorted({str(PROJECT_ROOT / t.partition("#")[0]) for t in targets if t.partition("#")[0].endswith(".md")})
    command = [str(REMARK), "--no-config", "--no-stdout", "--quiet", "--frail", "--color=false"]
    command += ["--use", f"{PLUGIN}=repository:false", str(page), *pages]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    return "" if result.returncode == 0 else result.stderr.strip() or f"remark exited {result.returncode}"
