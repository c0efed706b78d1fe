"""scripts/check_wheel.py: a wheel with demo, example or benchmark code, or a library
module importing seerrperf.testing, is refused (``make package`` runs it)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CHECK_WHEEL = Path(__file__).resolve().parents[1] / "scripts" / "check_wheel.py"
LIBRARY = {
    "seerrperf/__init__.py": "from . import _cache\n",
    "seerrperf/py.typed": "",
    "seerrperf/_cache/named.py": "from seerrperf._runtime import percentile\n",
    "seerrperf/testing/_fake_tmdb.py": "from seerrperf.testing._clock import FakeClock\n",
}


def check(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run check_wheel.py on a wheel holding ``files`` (path: source text)."""
    wheel = tmp_path / "seerrperf-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return subprocess.run(
        [sys.executable, str(CHECK_WHEEL), str(wheel)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_library_only_wheel_passes(tmp_path: Path) -> None:
    done = check(tmp_path, LIBRARY)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("seerrperf/_demo.py", "", "demo, example or benchmark code seerrperf/_demo.py"),
        ("seerrperf/_demo_app.py", "", "code seerrperf/_demo_app.py"),
        ("demo/load.py", "", "code demo/load.py"),
        ("media_app/app.py", "", "code media_app/app.py"),
        ("seerrperf/bench_pool.py", "", "code seerrperf/bench_pool.py"),
        ("benchmarks/_common.py", "", "unexpected file benchmarks/_common.py"),
        ("tests/test_x.py", "", "unexpected file tests/test_x.py"),
        ("seerrperf/_x.pyc", "", "compiled file seerrperf/_x.pyc"),
        (
            "seerrperf/_pg/pool.py",
            "from ..testing import EmbeddedPostgres\n",
            "seerrperf/_pg/pool.py imports seerrperf.testing",
        ),
        (
            "seerrperf/_x.py",
            "from . import testing\n",
            "seerrperf/_x.py imports seerrperf.testing",
        ),
        ("seerrperf/_y.py", "import seerrperf.testing\n", "imports seerrperf.testing"),
        ("seerrperf/_z.py", "from media_app import serve\n", "imports media_app"),
    ],
)
def test_demo_example_and_benchmark_code_is_refused(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    done = check(tmp_path, {**LIBRARY, name: text})
    assert done.returncode == 1
    assert problem in done.stderr


def test_a_missing_py_typed_is_refused(tmp_path: Path) -> None:
    done = check(tmp_path, {n: t for n, t in LIBRARY.items() if n != "seerrperf/py.typed"})
    assert done.returncode == 1
    assert "py.typed is missing" in done.stderr
