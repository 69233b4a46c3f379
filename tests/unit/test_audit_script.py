"""`make audit` says plainly whether it audited: the advisory database is probed first."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
VULN = {"id": "GHSA-9wx4-h78v-vm56", "fix_versions": ["2.32.0"]}


def load_audit() -> ModuleType:
    """Import requirements/audit.py, a script outside the packages."""
    spec = importlib.util.spec_from_file_location("audit", ROOT / "requirements" / "audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_pip_audit(probe: dict[str, Any], lock: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """Answer the probe and the lock's audit as pip-audit's JSON report would."""

    def run(requirements: Path, *options: str) -> tuple[dict[str, Any] | None, str]:
        dependencies = [probe] if "--no-deps" in options else lock
        return {"dependencies": dependencies, "fixes": []}, ""

    return run


@pytest.fixture
def audit() -> ModuleType:
    """Return the audit script as a module."""
    return load_audit()


def test_an_unreachable_database_is_said_plainly_and_passes(audit, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    skipped = {"name": "requests", "skip_reason": "Dependency not found on PyPI"}
    monkeypatch.setattr(audit, "pip_audit", fake_pip_audit(skipped, []))
    assert audit.main("requirements/dev.txt") == 0
    out = capsys.readouterr().out
    assert out.startswith("audit NOT DONE: the advisory database cannot be reached from here")
    assert "Nothing in requirements/dev.txt was checked" in out


def test_a_crashed_probe_counts_as_unreachable(audit, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(audit, "pip_audit", lambda *a: (None, "ConnectionError: no route"))
    assert audit.main("requirements/dev.txt") == 0
    assert "(ConnectionError: no route)" in capsys.readouterr().out


def test_a_vulnerable_pin_fails(audit, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    probe = {"name": "requests", "version": "2.31.0", "vulns": [VULN]}
    lock = [
        {"name": "requests", "version": "2.31.0", "vulns": [VULN]},
        {"name": "flask", "version": "3.1.3", "vulns": []},
    ]
    monkeypatch.setattr(audit, "pip_audit", fake_pip_audit(probe, lock))
    assert audit.main("requirements/dev.txt") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "requests 2.31.0: GHSA-9wx4-h78v-vm56 (fixed in 2.32.0)",
        "1 vulnerable of 2 audited packages in requirements/dev.txt",
    ]


def test_a_clean_lock_passes(audit, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    probe = {"name": "requests", "version": "2.31.0", "vulns": [VULN]}
    lock = [{"name": "flask", "version": "3.1.3", "vulns": []}]
    monkeypatch.setattr(audit, "pip_audit", fake_pip_audit(probe, lock))
    assert audit.main("requirements/dev.txt") == 0
    assert capsys.readouterr().out == "0 vulnerable of 1 audited packages in requirements/dev.txt\n"
