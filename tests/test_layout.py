"""Import directions of ARCHITECTURE.md, checked by scanning every module's imports (AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def test_packages_exist() -> None:
    for entry in ("service", "dp_core", "clients", "deploy", "tests"):
        assert (ROOT / entry).is_dir(), entry
    for entry in ("docker-compose.yml", "Dockerfile", "pyproject.toml", "README.md"):
        assert (ROOT / entry).is_file(), entry


@pytest.mark.parametrize("path", _modules("dp_core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_dp_core_never_imports_service_clients_or_tests(path: Path) -> None:
    assert not {_top(n) for n in _imports(path)} & {"service", "clients", "tests", "bench"}


@pytest.mark.parametrize(
    "path", _modules("dp_core") + _modules("service"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_numba_only_in_the_engine(path: Path) -> None:
    if (ROOT / "dp_core" / "engine") in path.parents:
        return
    assert "numba" not in {_top(n) for n in _imports(path)}


@pytest.mark.parametrize("path", _modules("dp_core/flows"), ids=lambda p: str(p.relative_to(ROOT)))
def test_flows_import_only_engine_types_errors_and_flows(path: Path) -> None:
    allowed = ("dp_core.engine", "dp_core.types", "dp_core.errors", "dp_core.flows")
    for name in _imports(path):
        if _top(name) == "dp_core":
            assert name.startswith(allowed), name


@pytest.mark.parametrize(
    "path",
    [p for p in _modules("dp_core") + _modules("service") if "reference" not in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_reference_is_used_only_by_tests_and_bench(path: Path) -> None:
    assert not any(n.startswith("dp_core.reference") for n in _imports(path))


@pytest.mark.parametrize("path", _modules("service"), ids=lambda p: str(p.relative_to(ROOT)))
def test_fastapi_only_in_the_web_layer(path: Path) -> None:
    rel = path.relative_to(ROOT / "service")
    web = rel.parts[0] in {"api", "dashboard"} or rel.name in {"app.py", "deps.py", "errors.py"}
    if not web:
        assert not {_top(n) for n in _imports(path)} & {"fastapi", "starlette"}, rel


@pytest.mark.parametrize("path", _modules("service/api"), ids=lambda p: str(p.relative_to(ROOT)))
def test_routers_reach_the_store_only_through_actions(path: Path) -> None:
    """service/api turns HTTP into action calls: storage is the actions' business."""
    assert not any(n == "service.store" or n.startswith("service.store.") for n in _imports(path))
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):  # `from service import store` names the module as an alias
        if isinstance(node, ast.ImportFrom) and node.module == "service":
            assert "store" not in {alias.name for alias in node.names}, path


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(p.relative_to(ROOT))
        for p in _modules("dp_core") + _modules("service")
        if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []
