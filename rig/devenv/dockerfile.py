"""A small Dockerfile reader for the image tests: instructions by stage, line continuations joined.

Only what the tests need: FROM (with ``AS``), ARG defaults, ENV, USER, WORKDIR, ENTRYPOINT/CMD
(exec form), COPY and RUN. No Docker engine runs on these machines, so the image is checked from its
recipe and its Python layer is rebuilt in a virtualenv with the recipe's own RUN script.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        variables: dict[str, str] = {}
        for value in self.all("ENV"):
            for item in shlex.split(value):
                key, _, text = item.partition("=")
                variables[key] = text
        return variables

    def exec_form(self, keyword: str) -> list[str] | None:
        value = self.last(keyword)
        return None if value is None else list(json.loads(value))


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", value, re.IGNORECASE)
            assert match, f"FROM {value}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            stages.append(Stage(base, match.group(2)))
        elif not stages and keyword == "ARG":
            key, _, default = value.partition("=")
            args[key] = default
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, value))
    return Dockerfile(args, stages)
