"""What ships, read from the shipped files: the workflows' steps and the CronJobs the program declares.

Shared by the fast checks (flags, variable names) and the end-to-end run on the local environment.
Nothing here is typed in again: steps, commands, flags and environments come from
``.github/workflows/*.yml`` and from rendering the Pulumi program for the production stacks.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import click
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


# ------------------------------------------------------------------ workflows


@dataclass(frozen=True)
class Step:
    workflow: str
    job: str
    index: int
    name: str
    run: str | None
    uses: str | None
    env: Mapping[str, str]  # the job's env overlaid by the step's (unexpanded expressions)
    step_env: Mapping[str, str]
    job_env: Mapping[str, str]
    with_: Mapping[str, Any]
    id: str | None
    matrix: Mapping[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.workflow}: job {self.job}, step {self.index + 1} ({self.name})"


def load_workflow(path: Path) -> dict[str, Any]:
    # yaml 1.1 reads the key `on` as True; the workflow's triggers are not needed here.
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


def matrices(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the job's ``strategy.matrix`` (one empty one without a matrix)."""
    matrix = dict((job.get("strategy") or {}).get("matrix") or {})
    matrix.pop("include", None)
    matrix.pop("exclude", None)
    if not matrix:
        return [{}]
    keys = sorted(matrix)
    return [dict(zip(keys, values, strict=True)) for values in product(*(matrix[k] for k in keys))]


def workflow_steps(paths: list[Path] | None = None) -> list[Step]:
    steps = []
    for path in paths or sorted(WORKFLOWS.glob("*.yml")):
        data = load_workflow(path)
        for job_name, job in (data.get("jobs") or {}).items():
            job_env = {k: str(v) for k, v in (job.get("env") or {}).items()}
            for matrix in matrices(job):
                for index, raw in enumerate(job.get("steps") or []):
                    step_env = {k: str(v) for k, v in (raw.get("env") or {}).items()}
                    steps.append(
                        Step(
                            workflow=path.name,
                            job=job_name,
                            index=index,
                            name=str(raw.get("name") or raw.get("uses") or raw.get("run", "")[:40]),
                            run=raw.get("run"),
                            uses=raw.get("uses"),
                            env={**job_env, **step_env},
                            step_env=step_env,
                            job_env=job_env,
                            with_=dict(raw.get("with") or {}),
                            id=raw.get("id"),
                            matrix=matrix,
                        )
                    )
    return steps


def expand(text: str, values: Mapping[str, str], step: Step) -> str:
    """``${{ ... }}`` expanded: matrix values, and every other expression from ``values``
    (``secrets.X``, ``vars.X``, ``github.*``, ``steps.<id>.outputs.<name>``, ``inputs.*``). An
    expression ``values`` lacks fails, naming the step: the test must know every input it gives."""

    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("matrix."):
            return str(step.matrix[expression.removeprefix("matrix.")])
        if expression not in values:
            raise KeyError(f"{step.where}: no local value for ${{{{ {expression} }}}}")
        return values[expression]

    return _EXPRESSION.sub(one, text)


def expressions(text: str) -> list[str]:
    return _EXPRESSION.findall(text)


def script_reads(script: str, name: str) -> bool:
    """A shell script reads ``$NAME`` / ``${NAME...}``."""
    return re.search(rf"\$\{{?{re.escape(name)}\b", script) is not None


# ------------------------------------------------------------------ command lines in run: steps


def commands_in(script: str, program: str) -> list[list[str]]:
    """The argument lists after ``program`` in a shell script, line by line (continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", script)
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        match = re.search(rf"(?:^|[\s;&|(]){re.escape(program)}\s+(.*)$", stripped)
        if match is None:
            continue
        try:
            found.append(shlex.split(match.group(1), comments=True))
        except ValueError:
            found.append(match.group(1).split())
    return found


def click_path(tokens: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The ``rollout`` (sub)command ``tokens`` name, its name path and the arguments after it."""
    from rollout_policies.cli.main import cli

    command: click.Command = cli
    path: list[str] = []
    rest = list(tokens)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(click.Context(command), rest[0])
        assert found is not None, f"rollout {' '.join([*path, rest[0]])}: no such command"
        command, path, rest = found, [*path, rest.pop(0)], rest
    return command, path, rest


def flags_of(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def unknown_flags(tokens: list[str]) -> list[str]:
    """Flags in a ``rollout ...`` call that its command does not have (what click rejects with
    "No such option", exit status 2). Shell words such as ``"${args[@]}"`` are left alone."""
    command, _, rest = click_path(tokens)
    known = flags_of(command)
    return [t.split("=", 1)[0] for t in rest if t.startswith("--") and t.split("=", 1)[0] not in known]


# ------------------------------------------------------------------ the program's CronJobs


@dataclass(frozen=True)
class CronJob:
    stack: str
    name: str
    manifest: dict[str, Any]

    @property
    def container(self) -> dict[str, Any]:
        spec = self.manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        containers: list[dict[str, Any]] = spec["containers"]
        assert len(containers) == 1, f"{self.name}: one container expected"
        return containers[0]

    @property
    def argv(self) -> list[str]:
        return [*self.container.get("command", []), *self.container.get("args", [])]

    @property
    def env(self) -> list[dict[str, Any]]:
        return list(self.container.get("env") or [])


def production_stacks(root: Path = ROOT) -> list[Path]:
    from infra.settings import settings_from_stack_file

    return [p for p in sorted(root.glob("Pulumi.*.yaml")) if settings_from_stack_file(p).is_production]


def rendered_cronjobs(stack_file: Path) -> Iterator[CronJob]:
    """The CronJobs the program declares for a stack file, rendered under Pulumi mocks."""
    from pulumi_render import render

    for resource in render(stack_file):
        if resource["kind"] == "CronJob":
            yield CronJob(stack_file.name, resource["metadata"]["name"], resource)
