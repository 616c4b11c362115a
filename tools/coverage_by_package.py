"""The test coverage of each package, from the data `make pytest` leaves in .coverage.

    python tools/coverage_by_package.py

The packages are the project's own (pyproject.toml, [tool.setuptools] packages); the floor the suite must reach
is [tool.coverage.report] fail_under there, enforced by pytest-cov.
"""

from __future__ import annotations

import io
import sys
import tomllib
from pathlib import Path

import coverage
from coverage.exceptions import NoDataError

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [name for name in project["tool"]["setuptools"]["packages"] if "." not in name]  # subpackages: in theirs
    if not (ROOT / ".coverage").is_file():
        print("coverage: no .coverage data (run `make pytest`)", file=sys.stderr)
        return 0
    cov = coverage.Coverage(data_file=str(ROOT / ".coverage"), config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    print("coverage by package (lines run by the suite):")
    for package in [*packages, None]:
        include = [str(ROOT / package / "*")] if package else None
        try:
            percent = cov.report(include=include, file=io.StringIO())
        except NoDataError:
            print(f"  {package:<10} no data")
            continue
        print(f"  {package or 'total':<10} {percent:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
