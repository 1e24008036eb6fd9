"""A small reader of the repository's Dockerfile, for tests that check and replay the image.

It understands what the Dockerfile uses: line continuations, comment lines, global ``ARG``
defaults before the first ``FROM``, stages, ``ENV key=value ...`` with ``$VAR`` / ``${VAR}``
expansion against the variables set before the instruction (Docker's rule), and the exec
(JSON) forms of ``CMD`` and ``HEALTHCHECK ... CMD``. Anything else it is asked to interpret
(the legacy ``ENV key value`` form, a shell-form ``CMD``) raises, so a change to the Dockerfile
that these readers cannot follow fails loudly instead of being misread.

Test support only.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    args: str  # everything after the keyword, continuation lines joined with a space
    line: int  # 1-based line of the keyword


@dataclass(frozen=True)
class Stage:
    name: str | None
    base: str  # the FROM image, global ARG defaults expanded
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        if not found:
            raise ValueError(f"no {keyword} in stage {self.name or self.base}")
        return found[-1]


def read_instructions(text: str) -> list[Instruction]:
    """Instructions in order, with continuation lines joined and comment lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # Docker drops comment lines, also inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    if pending:
        raise ValueError(f"Dockerfile ends inside a continued instruction (line {start})")
    return instructions


def expand(value: str, variables: dict[str, str]) -> str:
    """Docker's ``$VAR`` / ``${VAR}`` substitution (unset variables become empty)."""
    return _VARIABLE.sub(lambda m: variables.get(m["braced"] or m["bare"], ""), value)


def _arg_default(args: str) -> tuple[str, str | None]:
    name, sep, default = args.partition("=")
    return name.strip(), (default.strip() if sep else None)


def read_stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order)."""
    instructions = read_instructions(text)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    name: str | None = None
    base = ""

    def close() -> None:
        if current is not None:
            stages.append(Stage(name, base, tuple(current)))

    for instruction in instructions:
        if instruction.keyword == "FROM":
            close()
            words = instruction.args.split()
            base = expand(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            current = []
        elif current is None:
            if instruction.keyword != "ARG":
                raise ValueError(f"line {instruction.line}: only ARG may precede the first FROM")
            arg, default = _arg_default(instruction.args)
            global_args[arg] = default or ""
        else:
            current.append(instruction)
    close()
    return global_args, stages


def stage_args(stage: Stage) -> dict[str, str]:
    """The stage's own ``ARG name=default`` defaults."""
    return {
        name: default or "" for name, default in (_arg_default(i.args) for i in stage.all("ARG"))
    }


def stage_env(stage: Stage, base: dict[str, str]) -> dict[str, str]:
    """The environment the stage's ENV lines set up, starting from ``base`` (the parent image's
    environment). Within one ENV line every value is expanded against the variables as they
    were before that line, as Docker does."""
    env = dict(base)
    for instruction in stage.all("ENV"):
        before = dict(env)
        for token in shlex.split(instruction.args, posix=True):
            key, sep, value = token.partition("=")
            if not sep:
                raise ValueError(
                    f"line {instruction.line}: use the ENV key=value form ({instruction.args!r})"
                )
            env[key] = expand(value, before)
    return env


def exec_form(args: str, where: str) -> list[str]:
    """The JSON array of an exec-form instruction."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not in exec (JSON array) form: {args!r}") from error
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} is not a non-empty JSON array of strings: {args!r}")
    return value


@dataclass(frozen=True)
class Healthcheck:
    options: dict[str, str]  # interval, timeout, start-period, retries
    command: list[str]  # exec form, without the CMD keyword


def healthcheck(stage: Stage) -> Healthcheck:
    words = stage.last("HEALTHCHECK").args
    options: dict[str, str] = {}
    rest = words
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.strip()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD":
        raise ValueError(f"HEALTHCHECK must be 'CMD [...]', not {rest!r}")
    return Healthcheck(options, exec_form(command.strip(), "HEALTHCHECK CMD"))


def load() -> tuple[dict[str, str], list[Stage]]:
    return read_stages(DOCKERFILE.read_text())
