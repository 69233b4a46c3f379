"""The admin-API conventions table (docs/operations.md): every row names tests, and every
named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
TEST_NAME = re.compile(r"`(test_\w+\.py)::(test_\w+)`")


def convention_rows() -> list[str]:
    """Return the table rows of the "Admin API conventions" section of docs/operations.md."""
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = operations.split("### Admin API conventions", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return rows[2:]  # after the header and the separator


def functions_in(path: Path) -> set[str]:
    """Return the names of a test module's top-level test functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_convention_names_tests_that_exist() -> None:
    rows = convention_rows()
    assert len(rows) >= 10

    for row in rows:
        named = TEST_NAME.findall(row.rsplit("|", 2)[1])
        assert named, f"no test named for: {row}"
        for module, function in named:
            found = list((ROOT / "tests").rglob(module))
            assert found, f"{module} does not exist ({row})"
            assert function in functions_in(found[0]), f"{module}::{function} does not exist"
