"""The documentation stands on its own: every relative link resolves inside the repository.

For README.md, docs/*.md and the other Markdown files of the repository: every relative link
``[text](path#anchor)`` (and reference definition ``[label]: path``) points to a file or folder
inside the repository, and its ``#anchor``, when it has one, is a heading of that Markdown file
under GitHub's slug rules (or an explicit ``<a id>``/``<a name>``). No doc cites the design
material that lives outside the repository (``../shared/...``, ``shared/research/...``): a clone
has neither. The checker is tested on synthetic bad documents too, so a broken link cannot pass
because the checker sees nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".venv", "node_modules", ".git", "build", "dist", "__pycache__"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*?(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); target optionally in <...>, optionally with a "title".
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one level of nested brackets allowed
    r"\(\s*(<[^>]*>|[^)\s]*)(?:\s+\"[^\"]*\")?\s*\)"  # (target "title")
)
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/(?:research|API\.md|ARCHITECTURE\.md|STYLE\.md)")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md, docs/*.md and every other Markdown file of the repository (no virtualenvs,
    build output or hidden folders)."""
    found = []
    for path in root.rglob("*.md"):
        parts = path.relative_to(root).parts[:-1]
        if any(p in SKIPPED_DIRS or p.startswith(".") or p.endswith(".egg-info") for p in parts):
            continue
        found.append(path)
    return sorted(found)


def _outside_fences(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        out.append((number, line))
    return out


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    return [
        (number, INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line))
        for number, line in _outside_fences(text)
    ]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (links and code marks dropped), lower-cased,
    without punctuation other than ``-`` and ``_``, spaces turned into ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown document defines (duplicate headings get -1, -2, ...)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, line in _outside_fences(text):
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


def links(path: Path) -> list[Link]:
    """The links of a Markdown file, outside code."""
    out = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        definition = REFERENCE_DEF.match(line)
        if definition:
            targets.append(definition.group(1))
        out.extend(Link(path, number, t.strip("<>")) for t in targets)
    return out


def broken_links(paths: list[Path], root: Path = ROOT) -> list[str]:
    """One line per relative link that leaves ``root``, names nothing, or names a missing
    anchor; empty when every link resolves."""
    problems = []
    cache: dict[Path, set[str]] = {}
    for path in paths:
        for link in links(path):
            where = f"{path.relative_to(root)}:{link.line}: {link.target!r}"
            if not link.target:
                problems.append(f"{where}: empty link")
                continue
            if EXTERNAL.match(link.target):
                continue
            file_part, _, anchor = link.target.partition("#")
            target = (path.parent / unquote(file_part)).resolve() if file_part else path
            if not target.is_relative_to(root.resolve()):
                problems.append(f"{where}: points outside the repository")
                continue
            if not target.exists():
                problems.append(f"{where}: no such file")
                continue
            if anchor and target.suffix == ".md":
                if target not in cache:
                    cache[target] = anchors(target.read_text(encoding="utf-8"))
                if unquote(anchor) not in cache[target]:
                    problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def outside_references(paths: list[Path], root: Path = ROOT) -> list[str]:
    """Lines that cite material outside the repository (``../shared``, ``shared/research``)."""
    problems = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if OUTSIDE.search(line):
                problems.append(f"{path.relative_to(root)}:{number}: {line.strip()[:100]}")
    return problems


# --- the repository's docs ----------------------------------------------------------------------


def test_the_documents_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in markdown_files()}
    assert {"README.md", "docs/api.md", "docs/methods.md", "docs/privacy.md"} <= names
    assert not any(name.startswith((".venv", "shared")) for name in names)


def test_every_relative_link_resolves_inside_the_repository() -> None:
    paths = markdown_files()
    assert sum(len(links(p)) for p in paths) > 50  # the checker does see the links
    assert broken_links(paths) == []


def test_no_doc_cites_material_outside_the_repository() -> None:
    assert outside_references(markdown_files()) == []


# --- the checker itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("The first ten minutes", "the-first-ten-minutes"),
        ("`GET /v1/jobs/{job_id}`", "get-v1jobsjob_id"),
        ("`POST /v1/datasets/{dataset_id}/samples`", "post-v1datasetsdataset_idsamples"),
        (
            "Sinkhorn: convergence policy (`dp_core/engine/sinkhorn_solve.py`)",
            "sinkhorn-convergence-policy-dp_coreenginesinkhorn_solvepy",
        ),
        ("`mean_field` (method `shk`)", "mean_field-method-shk"),
        ("Why the [gradient norm](privacy.md) wins", "why-the-gradient-norm-wins"),
        ("Rényi curves, α ≥ 1", "rényi-curves-α--1"),
    ],
)
def test_slugs_follow_github(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_duplicate_headings_and_html_anchors_are_anchors() -> None:
    text = '# Notes\n\n## Notes\n\n<a id="here"></a>\n\n```\n# not a heading\n```\n'
    assert anchors(text) == {"notes", "notes-1", "here"}


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_checker_reports_each_kind_of_broken_link(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write(repo, "docs/api.md", "# API\n\n## Keys\n\n### `GET /v1/keys`\n")
    _write(tmp_path, "outside.md", "# Outside\n")
    readme = _write(
        repo,
        "README.md",
        "\n".join(
            [
                "# Title",
                "[ok](docs/api.md) [ok anchor](docs/api.md#keys) [ok code](docs/api.md#get-v1keys)",
                "[ok self](#title) [web](https://example.org/x#y) [mail](mailto:a@b.c)",
                "[missing file](docs/nope.md)",
                "[missing anchor](docs/api.md#datasets)",
                "[outside](../outside.md)",
                "![missing image](docs/missing.png)",
                "[missing self anchor](#nope)",
                "[ref]: docs/gone.md",
                "`[in code](docs/code-span.md)`",
                "```",
                "[in a fence](docs/fenced.md)",
                "```",
            ]
        ),
    )
    problems = broken_links([readme], repo)
    assert len(problems) == 6, problems
    expected = [
        ("README.md:4", "no such file"),
        ("README.md:5", "no heading with anchor #datasets"),
        ("README.md:6", "points outside the repository"),
        ("README.md:7", "no such file"),
        ("README.md:8", "no heading with anchor #nope"),
        ("README.md:9", "no such file"),
    ]
    for problem, (where, what) in zip(problems, expected, strict=True):
        assert problem.startswith(where) and problem.endswith(what), problem


def test_the_checker_reports_references_to_shared(tmp_path: Path) -> None:
    doc = _write(
        tmp_path,
        "docs/x.md",
        "The contract is `../shared/API.md`.\nSee shared/research/flows.md.\n"
        "The shared ledger is fine, and so is a shared 2-core machine.\n",
    )
    problems = outside_references([doc], tmp_path)
    assert [p.split(":")[1] for p in problems] == ["1", "2"]
