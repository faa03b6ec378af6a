"""Running a benchmark as a user does: ``python -m benchmarks NAME ...`` from the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = os.environ.get("AGORA_DATA_DIR", "")
HAVE_DATA = bool(DATA_DIR) and (Path(DATA_DIR) / "ml-100k" / "u.data").is_file()
needs_data = pytest.mark.skipif(
    not HAVE_DATA,
    reason="MovieLens 100K not found: set AGORA_DATA_DIR to a folder holding ml-100k/ "
    "(e.g. AGORA_DATA_DIR=../shared/data) to run this test",
)


def benchmark(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m benchmarks ARGS`` in a fresh interpreter, from the repository's root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )  # fmt: skip
