"""Check a built wheel's contents: py.typed shipped, no tests, no stray files.

Fails as well when demo, load-driver, example or benchmark code is in the
wheel (they live in ``examples/`` and ``benchmarks/``, outside ``src/``), and
when a library module imports ``seerrperf.testing`` or example code: only
``seerrperf.testing`` itself may.

    python scripts/check_wheel.py dist/seerrperf-*.whl
"""

from __future__ import annotations

import ast
import re
import sys
import zipfile
from collections.abc import Iterator

UNEXPECTED_DIRS = ("tests/", "benchmarks/", "examples/", "scripts/")
# Any path part named like the demo, its load driver, the example app or a benchmark.
NOT_LIBRARY = re.compile(r"(^|/)(_?demo(_app)?|media_app|bench_\w*|benchmarks?|examples?)(/|\.py$)")
# Imports no library module may make.
FORBIDDEN_IMPORT = re.compile(r"^(seerrperf\.testing|demo|media_app|bench_\w*)(\.|$)")


def imported_modules(path: str, source: bytes) -> Iterator[str]:
    """The absolute names of the modules a wheel file imports (relative ones resolved)."""
    package = path.removesuffix(".py").split("/")[:-1]
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            # ``from . import testing`` names the module in the alias.
            yield from (f"{module}.{alias.name}" for alias in node.names)


def problems(wheel: str) -> list[str]:
    """What is wrong with the wheel's contents; empty when nothing is."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        found = []
        if "seerrperf/py.typed" not in names:
            found.append("py.typed is missing")
        found += [f"unexpected file {n}" for n in names if n.startswith(UNEXPECTED_DIRS)]
        found += [f"compiled file {n}" for n in names if n.endswith((".pyc", ".so"))]
        found += [f"demo, example or benchmark code {n}" for n in names if NOT_LIBRARY.search(n)]
        for name in names:
            if not name.endswith(".py") or name.startswith("seerrperf/testing/"):
                continue
            found += [
                f"{name} imports {module}"
                for module in sorted(set(imported_modules(name, archive.read(name))))
                if FORBIDDEN_IMPORT.match(module)
            ]
    return found


def main() -> None:
    wheel = sys.argv[1]
    found = problems(wheel)
    if found:
        sys.exit(f"{wheel}: " + "; ".join(found))
    print(f"{wheel}: py.typed present; no tests, demo, examples or benchmarks")


if __name__ == "__main__":
    main()
