"""Shared helpers for the engine tests: statistical critical values and subprocess runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from scipy import stats

REPO_ROOT = Path(__file__).resolve().parents[3]


def _ks_critical(n: int, alpha: float) -> float:
    """Exact two-sided one-sample Kolmogorov–Smirnov critical value for n draws at level alpha.

    For large n it approaches sqrt(-ln(alpha/2)/2)/sqrt(n) (1.949/sqrt(n) at alpha = 0.001).
    """
    return float(stats.kstwo.isf(alpha, n))


@pytest.fixture
def ks_critical() -> Callable[[int, float], float]:
    return _ks_critical


def _run_python(code: str, env_extra: dict[str, str], timeout: float) -> str:
    """Run ``code`` in a fresh interpreter (repo root on the path) and return its stdout."""
    env = dict(os.environ)
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def run_python() -> Callable[[str, dict[str, str], float], str]:
    return _run_python
