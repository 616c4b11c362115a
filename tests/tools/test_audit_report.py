"""tools/audit_report.py reads pip-audit's JSON report: a vulnerability fails, an audit that asked nothing says so."""

from __future__ import annotations

import json

from tools.audit_report import main


def report(tmp_path, dependencies):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"dependencies": dependencies}))
    return path


def test_a_known_vulnerability_fails_and_is_named(tmp_path, capsys):
    dependencies = [
        {"name": "pillow", "version": "1.0", "vulns": [{"id": "PYSEC-0000-1", "fix_versions": ["1.1"]}]},
        {"name": "numpy", "version": "2.0", "vulns": []},
    ]
    assert main(report(tmp_path, dependencies), tmp_path / "stderr", "requirements-serve.lock") == 1
    err = capsys.readouterr().err
    assert "pillow==1.0: PYSEC-0000-1 (fixed in: 1.1)" in err
    assert "FAILED  1 known vulnerabilities" in err


def test_clean_and_partly_unknown(tmp_path, capsys):
    dependencies = [
        {"name": "numpy", "version": "2.0", "vulns": []},
        {"name": "local", "skip_reason": "Dependency not found on PyPI and could not be audited: local (1)"},
    ]
    assert main(report(tmp_path, dependencies), tmp_path / "stderr", "L") == 0
    out = capsys.readouterr().out
    assert "ok      1 packages of L" in out
    assert "not audited (unknown to PyPI): local" in out


def test_nothing_audited_is_said_not_passed(tmp_path, capsys):
    unknown = [{"name": "numpy", "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2)"}]
    assert main(report(tmp_path, unknown), tmp_path / "stderr", "L") == 0
    assert "skipped  PyPI's JSON API knows none of the 1 locked versions" in capsys.readouterr().out
    stderr = tmp_path / "stderr"
    stderr.write_text("Traceback ...\nConnectionError: Failed to resolve 'pypi.org'\n")
    assert main(tmp_path / "absent.json", stderr, "L") == 0
    assert "could not be asked (ConnectionError: Failed to resolve 'pypi.org')" in capsys.readouterr().out
