"""docs/api.md matches the OpenAPI document the service serves.

Every operation (method + path) of ``create_app().openapi()`` has a section ``### `METHOD /path` ``
in docs/api.md and every such section is an operation of the document; each section's
``**Answers:**`` line lists exactly the status codes the document gives that operation; every
problem code the document names is in the error table, and the table names only codes the
service has. A new endpoint, a removed one or a new status code therefore fails here until the
reference says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.errors import _TITLES
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "api.md"
METHODS = ("get", "put", "post", "delete", "patch")
SECTION = re.compile(r"^### `(GET|PUT|POST|DELETE|PATCH) (/\S*)`\s*$", re.MULTILINE)
ANSWERS = re.compile(r"^\*\*Answers:\*\*(.*)$", re.MULTILINE)
TABLE_ROW = re.compile(r"^\| (\d{3}) \| `([a-z_]+)` \|", re.MULTILINE)


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        warm_on_startup=False,
        database_url=f"sqlite:///{folder / 'privflow.db'}",
        openapi_enabled=True,
    )
    return create_app(settings).openapi()


def _operations(openapi: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(METHOD, path) -> the status codes the document lists for it."""
    return {
        (method.upper(), path): set(operation.get("responses", {}))
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def _sections(text: str) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> the text of its ``###`` section in docs/api.md."""
    matches = list(SECTION.finditer(text))
    sections: dict[tuple[str, str], str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        key = (match.group(1), match.group(2))
        assert key not in sections, f"{key} has two sections"
        body = text[match.end() : end]
        sections[key] = re.split(r"^#{1,3} ", body, flags=re.MULTILINE)[0]
    return sections


def test_every_operation_is_documented_and_nothing_else(openapi: dict[str, Any]) -> None:
    served = set(_operations(openapi))
    documented = set(_sections(API_MD.read_text(encoding="utf-8")))
    assert len(served) > 20
    assert sorted(served - documented) == [], "served but missing from docs/api.md"
    assert sorted(documented - served) == [], "in docs/api.md but not served (or not in OpenAPI)"


def test_each_section_lists_exactly_the_documented_status_codes(
    openapi: dict[str, Any],
) -> None:
    sections = _sections(API_MD.read_text(encoding="utf-8"))
    for key, statuses in _operations(openapi).items():
        answers = ANSWERS.findall(sections[key])
        assert len(answers) == 1, f"{key}: one **Answers:** line expected"
        listed = set(re.findall(r"\b([1-5]\d\d)\b", answers[0]))
        assert listed == statuses, f"{key}: docs list {sorted(listed)}, OpenAPI {sorted(statuses)}"


def test_the_endpoint_index_lists_every_section() -> None:
    text = API_MD.read_text(encoding="utf-8")
    index = text.split("## Endpoint index", 1)[1].split("\n## ", 1)[0]
    indexed = set(re.findall(r"\[`(GET|PUT|POST|DELETE|PATCH) (/\S*)`\]", index))
    assert indexed == set(_sections(text))


def test_every_problem_code_is_in_the_error_table(openapi: dict[str, Any]) -> None:
    text = API_MD.read_text(encoding="utf-8")
    table = {code: int(status) for status, code in TABLE_ROW.findall(text)}
    assert set(table) <= set(_TITLES) | {"not_ready"}, "the table names a code the service lacks"
    named: set[str] = set()
    for item in openapi["paths"].values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                description = response.get("description", "")
                for group in re.findall(r"\(([a-z_, ]+)\)", description):
                    named.update(code.strip() for code in group.split(","))
                for content in response.get("content", {}).values():
                    example = content.get("example")
                    if isinstance(example, dict) and "code" in example:
                        named.add(example["code"])
    assert {"budget_exceeded", "too_expensive", "not_ready"} <= named
    assert sorted(named - set(table)) == []
    # And each code sits at the status the service answers it with.
    for status, code in TABLE_ROW.findall(text):
        assert code in _TITLES or code == "not_ready"
        if code in ("unauthenticated", "forbidden", "not_found", "budget_exceeded"):
            assert (
                int(status)
                == {
                    "unauthenticated": 401,
                    "forbidden": 403,
                    "not_found": 404,
                    "budget_exceeded": 409,
                }[code]
            )


def test_the_answers_lines_name_codes_the_table_knows() -> None:
    text = API_MD.read_text(encoding="utf-8")
    table = {code for _, code in TABLE_ROW.findall(text)}
    for key, section in _sections(text).items():
        for line in ANSWERS.findall(section):
            codes = set(re.findall(r"`([a-z_]+)`", line))
            assert codes <= table, f"{key}: {sorted(codes - table)} not in the error table"


def test_every_json_example_is_json() -> None:
    text = API_MD.read_text(encoding="utf-8")
    blocks = re.findall(r"^```json\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) > 25
    for block in blocks:
        json.loads(block)  # raises, naming the position, on a broken example
