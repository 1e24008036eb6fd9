"""Threading defaults (filled in on import, overridable by environment) and the per-run thread
limit of dp_core.engine.parallel."""

from __future__ import annotations

import json

import numba
import pytest

from dp_core.engine import parallel

_REPORT = """
import json, os
{before}
import numpy as np
import numba
from dp_core.engine import kde
kde.log_kde_self(np.linspace(0.0, 1.0, 64).reshape(-1, 1), 0.1)  # a parallel kernel runs
print(json.dumps({{
    "priority": os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"),
    "wait": os.environ.get("OMP_WAIT_POLICY"),
    "layer": numba.threading_layer(),
}}))
"""


def _report(run_python, env: dict[str, str], before: str = "") -> dict[str, str]:
    blank = {"NUMBA_THREADING_LAYER": "", "NUMBA_THREADING_LAYER_PRIORITY": "", **env}
    code = _REPORT.format(before=before)
    return json.loads(run_python(code, blank, 600).strip().splitlines()[-1])


def _unset(names: tuple[str, ...]) -> str:
    return "\n".join(f"os.environ.pop({name!r}, None)" for name in names)


_ALL = ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY", "OMP_WAIT_POLICY")


def test_defaults_fill_the_unset_environment(run_python):
    """Nothing set: OpenMP first (the layer that loads here), passive wait."""
    got = _report(run_python, {}, before=_unset(_ALL))
    assert got["priority"] == "omp tbb workqueue"
    assert got["wait"] == "PASSIVE"
    assert got["layer"] == "omp"


def test_defaults_apply_when_numba_was_imported_first(run_python):
    got = _report(run_python, {}, before=_unset(_ALL) + "\nimport numba")
    assert got["layer"] == "omp"


def test_the_environment_overrides_the_defaults(run_python):
    before = _unset(_ALL) + (
        "\nos.environ['NUMBA_THREADING_LAYER'] = 'workqueue'"
        "\nos.environ['OMP_WAIT_POLICY'] = 'ACTIVE'"
    )
    got = _report(run_python, {}, before=before)
    assert got["wait"] == "ACTIVE"
    assert got["layer"] == "workqueue"


def test_serial_rule_and_its_environment(monkeypatch):
    monkeypatch.delenv("PRIVFLOW_SERIAL_WORK", raising=False)
    assert parallel.serial_work() == parallel.DEFAULT_SERIAL_WORK
    assert parallel.step_work(2000, 1) == 128_000  # the cell expansion is linear in 1-D
    assert parallel.step_work(2000, 2) == 8_000_000  # pair terms in d >= 2
    assert parallel.run_threads(2000, 1) == 1  # the default release
    assert parallel.run_threads(32768, 1) == 1
    assert parallel.run_threads(1000, 2) == 1
    assert parallel.run_threads(2000, 2) is None
    monkeypatch.setenv("PRIVFLOW_SERIAL_WORK", "0")
    assert parallel.run_threads(2, 1) is None
    monkeypatch.setenv("PRIVFLOW_SERIAL_WORK", " 1e9 ")
    assert parallel.run_threads(4000, 2) == 1
    monkeypatch.setenv("PRIVFLOW_SERIAL_WORK", "many")
    with pytest.raises(ValueError, match="PRIVFLOW_SERIAL_WORK"):
        parallel.serial_work()


def test_thread_limit_is_restored():
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this machine gives Numba a single thread"
    before = numba.get_num_threads()
    with parallel.threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError), parallel.threads(1):
        raise RuntimeError("the limit is lifted on the way out")
    assert numba.get_num_threads() == before
    with parallel.threads(None):
        assert numba.get_num_threads() == before
    with parallel.threads(10_000):  # capped at what Numba has
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
