"""Check a built wheel's contents: py.typed shipped, no tests, no stray files."""

from __future__ import annotations

import sys
import zipfile

wheel = sys.argv[1]
names = zipfile.ZipFile(wheel).namelist()
problems = []
if "seerrperf/py.typed" not in names:
    problems.append("py.typed is missing")
unexpected = ("tests/", "benchmarks/", "examples/", "scripts/")
problems += [f"unexpected file {n}" for n in names if n.startswith(unexpected)]
problems += [f"compiled file {n}" for n in names if n.endswith((".pyc", ".so"))]
if problems:
    sys.exit(f"{wheel}: " + "; ".join(problems))
print(f"{wheel}: {len(names)} files, py.typed present, no tests")
