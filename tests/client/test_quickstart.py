"""The quick-start of ``docs/client.md`` runs as written: its bash and Python blocks (the flows,
memories and generators examples too), in document order, against the session's real service
(only the blocks that install, or read the key of the operator's own server, are left to the
reader; ``scripts/newcomer-check`` runs those too, on a fresh clone)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from privflow_client import Client

from tests.client.conftest import REPO_ROOT, Server

DOC = REPO_ROOT / "docs" / "client.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SETUP = ("pip install", "privflow-admin.key")


def _blocks() -> list[tuple[str, str]]:
    return [(lang, code) for lang, code in BLOCK.findall(DOC.read_text())]


def test_the_doc_has_the_blocks_this_test_runs() -> None:
    blocks = _blocks()
    runnable = [b for b in blocks if not any(s in b[1] for s in SETUP)]
    assert len(blocks) - len(runnable) == 2  # install, the operator's key
    assert [lang for lang, _ in runnable] == [
        "bash",
        "python",
        "python",
        "bash",
        "python",
        "python",
        "python",
    ]


def test_the_quick_start_runs_as_written(
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRIVFLOW_URL", server.url)
    monkeypatch.setenv("PRIVFLOW_API_KEY", server.admin_key)
    monkeypatch.setenv("PRIVFLOW_ADMIN_KEY", server.admin_key)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    namespace: dict[str, object] = {"__name__": "quickstart"}
    shell_outputs: list[str] = []
    for lang, code in _blocks():
        if any(s in code for s in SETUP):
            continue
        if lang == "python":
            exec(compile(code, str(DOC), "exec"), namespace)
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{code}\n{done.stdout}\n{done.stderr}"
        shell_outputs.append(done.stdout)

    for value in namespace.values():  # a script's clients close at exit; here, explicitly
        if isinstance(value, Client):
            value.close()
    printed = capsys.readouterr()
    budget = namespace["budget"]
    assert budget.spent.epsilon == pytest.approx(1.3)  # type: ignore[attr-defined]
    assert "budget_exceeded" in printed.out and "100%" in printed.err
    assert '"remaining"' in shell_outputs[-1] and '"mean_field"' in shell_outputs[-1]
    robust = namespace["robust"]  # the custom utility's release
    assert robust.certificate.utility_form == "gradient_norm"  # type: ignore[attr-defined]
    assert 18 <= robust.samples_array[0, 0] <= 100  # type: ignore[attr-defined]
    flow, retrieval = namespace["flow"], namespace["retrieval"]
    assert flow.seed == 7 and retrieval.nearest_pattern == 2  # type: ignore[attr-defined]
    generator, samples = namespace["generator"], namespace["samples"]
    assert generator.info.fit.converged  # type: ignore[attr-defined]
    assert samples.shape == (10_000, 2)  # type: ignore[attr-defined]
