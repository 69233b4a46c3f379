"""The suite mirrors the layers: unit tests touch no Redis or HTTP, no test borrows another's."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TEST_PACKAGES = ("tests.unit", "tests.integration", "tests.browser")
# The fixtures that start or reach a redis-server, the sandbox, the app or a worker.
REAL_PARTS = frozenset(
    {
        "redis_server",
        "redis_conn",
        "store",
        "sandbox_server",
        "sandbox",
        "settings",
        "app",
        "client",
        "relay_url",
        "start_worker",
    }
)


def imported_modules(path: Path) -> set[str]:
    """Return every module a file imports from, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_test_module_imports_another_or_the_conftest() -> None:
    borrowed = {
        f"{path.relative_to(TESTS)}: {module}"
        for path in TESTS.rglob("*.py")
        for module in imported_modules(path)
        if module.startswith(TEST_PACKAGES) or module == "tests.conftest"
    }
    assert borrowed == set(), "shared helpers belong in tests/helpers.py or a fixture"


def test_unit_tests_ask_for_no_redis_sandbox_app_or_worker() -> None:
    asked = {
        f"{path.name}::{node.name}({arg.arg})"
        for path in (TESTS / "unit").glob("test_*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
        for arg in node.args.args
        if arg.arg in REAL_PARTS
    }
    assert asked == set(), "a test with real parts belongs in tests/integration"


def test_the_layout_checks_see_the_suite() -> None:
    assert len(list((TESTS / "unit").glob("test_*.py"))) >= 5
    assert "tests.helpers" in imported_modules(TESTS / "integration" / "test_recovery.py")
