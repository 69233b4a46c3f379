"""The shape of the code: the largest module and the spread of function lengths.

Run: python -m bench.code_shape [ROOT]   (ROOT: a checkout, default the current directory)

Counts every .py file under ROOT/relay and ROOT/workers. A module's size is its line count;
a function's length runs from its `def` line to its last line (decorators left out), for
every function and method, nested ones included. Percentiles are statistics.quantiles'
inclusive method, as bench/harness.py uses for latencies.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("relay", "workers")


@dataclass(frozen=True)
class Shape:
    """What the script reports about one tree."""

    modules: int
    largest_module: str
    largest_module_lines: int
    functions: int
    median_function_lines: float
    p90_function_lines: float
    longest_function: str
    longest_function_lines: int


def sources(root: Path) -> list[Path]:
    """Return the Python files of the measured packages, in a stable order."""
    return sorted(path for package in PACKAGES for path in (root / package).rglob("*.py"))


def function_lengths(path: Path) -> list[tuple[str, int]]:
    """Return (name, lines) for every function defined in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def percentile(values: list[int], q: int) -> float:
    """Return the q-th percentile (1..99) of the values."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure(root: Path) -> Shape:
    """Measure the tree at root."""
    files = sources(root)
    if not files:
        raise SystemExit(f"no Python files under {root}/relay or {root}/workers")
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in files}
    largest = max(files, key=lambda path: sizes[path])
    functions = [
        (f"{path.relative_to(root)}:{name}", lines)
        for path in files
        for name, lines in function_lengths(path)
    ]
    lengths = [lines for _, lines in functions]
    longest = max(functions, key=lambda item: item[1])
    return Shape(
        modules=len(files),
        largest_module=str(largest.relative_to(root)),
        largest_module_lines=sizes[largest],
        functions=len(functions),
        median_function_lines=statistics.median(lengths),
        p90_function_lines=percentile(lengths, 90),
        longest_function=longest[0],
        longest_function_lines=longest[1],
    )


def report(shape: Shape) -> str:
    """Format a shape as a few readable lines."""
    return "\n".join(
        (
            f"modules: {shape.modules}",
            f"largest module: {shape.largest_module} ({shape.largest_module_lines} lines)",
            f"functions: {shape.functions}, lines per function: median "
            f"{shape.median_function_lines:g}, p90 {shape.p90_function_lines:g}",
            f"longest function: {shape.longest_function} ({shape.longest_function_lines} lines)",
        )
    )


def main(argv: list[str] | None = None) -> None:
    """Print the shape of the tree named on the command line."""
    parser = argparse.ArgumentParser(description="Print the shape of relay/ and workers/.")
    parser.add_argument("root", nargs="?", default=".", type=Path)
    print(report(measure(parser.parse_args(argv).root)))


if __name__ == "__main__":
    main(sys.argv[1:])
