"""What tools/audit.sh prints of pip-audit's JSON report: each known vulnerability (exit 1), or that nothing could be
audited and why (exit 0), or how many packages were audited clean.

    python tools/audit_report.py REPORT.json STDERR.txt LOCK
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(report: Path, stderr: Path, lock: str) -> int:
    if not report.is_file() or not report.read_text().strip():
        last = (stderr.read_text().strip().splitlines() or ["no output"])[-1]
        print(f"audit: skipped  the vulnerability service could not be asked ({last[:200]}): nothing was audited")
        return 0
    dependencies = json.loads(report.read_text())["dependencies"]
    found = [(d["name"], d["version"], v) for d in dependencies for v in d.get("vulns", [])]
    for name, version, vuln in found:
        fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
        print(f"audit: {name}=={version}: {vuln['id']} (fixed in: {fixed})", file=sys.stderr)
    if found:
        print(f"audit: FAILED  {len(found)} known vulnerabilities in {lock}", file=sys.stderr)
        return 1
    skipped = [d["name"] for d in dependencies if "skip_reason" in d]
    audited = len(dependencies) - len(skipped)
    if not audited:
        print(
            f"audit: skipped  PyPI's JSON API knows none of the {len(dependencies)} locked versions in {lock} "
            "(a package mirror, not PyPI): nothing was audited"
        )
    else:
        print(f"audit: ok      {audited} packages of {lock}: no known vulnerability")
        if skipped:
            print(f"audit: not audited (unknown to PyPI): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
