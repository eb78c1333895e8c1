"""The shipped wiring as the rehearsal runs it: workflow steps read from the YAML, never retyped.

A workflow step is its ``run:`` script and the environment its ``env:`` blocks give (workflow, job,
step, in that order), with ``${{ ... }}`` expressions resolved from a ``Context``: the repository's
secrets and variables mapped to the local environment's values, the runner's default variables,
and the event (``github.event.before``, ``github.sha``, ``inputs.*``). An expression the context
cannot resolve is an error naming the workflow and the expression, never an empty string.

What GitHub's runner does around the steps is done here the closest local way, and only that:
``actions/checkout`` is a fresh clone of the remote's main; ``actions/setup-python`` and the
``pip install -e .`` step are this interpreter with the clone first on ``PYTHONPATH`` (what an
editable install of the clone gives); ``pulumi/actions`` is the CLI from the tool cache, behind
``pulumi_shim`` because the offline CLI build has no Python language host (README, "Tools").
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollout_policies.errors import UserError

_EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
SHIM_DIR = Path(__file__).resolve().parent / "bin"


class WiringError(UserError):
    """A shipped workflow cannot run here as written: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class WorkflowStep:
    """One ``run:`` step of a shipped workflow, as written."""

    workflow: Path
    job: str
    name: str
    run: str
    env: Mapping[str, str]  # unresolved: workflow env, then job env, then step env

    @property
    def where(self) -> str:
        return f"{self.workflow.name}: job {self.job}: step {self.name!r}"


@dataclass
class Context:
    """What ``${{ ... }}`` resolves to: secrets, variables, the event, the runner's token."""

    secrets: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    github: Mapping[str, str] = field(default_factory=dict)  # token, sha, event.before, ...
    # Outputs of `uses:` steps the rehearsal stands in for: "app-token.outputs.token" is the GitHub
    # App token (actions/create-github-app-token), here the GitHub stand-in's token.
    steps: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, expression: str, where: str) -> str:
        head, _, name = expression.partition(".")
        tables: dict[str, Mapping[str, str]] = {
            "secrets": self.secrets,
            "vars": self.variables,
            "inputs": self.inputs,
            "github": self.github,
            "steps": self.steps,
        }
        if head not in tables:
            raise WiringError(f"{where}: ${{{{ {expression} }}}}: the rehearsal cannot resolve {head!r}")
        table = tables[head]
        if head == "inputs":
            return table.get(name, "")  # a scheduled run has no inputs: GitHub gives ""
        if name not in table:
            raise WiringError(
                f"{where}: ${{{{ {expression} }}}}: no local value for {head} {name!r}"
                " (the rehearsal maps every secret the docs name; is this one new?)"
            )
        return table[name]

    def substitute(self, text: str, where: str) -> str:
        return _EXPRESSION.sub(lambda m: self.resolve(m.group(1), where), text)


def load_workflow(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise WiringError(f"{path}: cannot read the workflow: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
        raise WiringError(f"{path}: not a workflow (no jobs)")
    return data


def run_steps(path: Path) -> list[WorkflowStep]:
    """Every ``run:`` step of the workflow, in order, with its merged ``env:``."""
    data = load_workflow(path)
    steps: list[WorkflowStep] = []
    top = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
    for job_name, job in data["jobs"].items():
        job_env = {**top, **{str(k): str(v) for k, v in (job.get("env") or {}).items()}}
        for index, step in enumerate(job.get("steps") or []):
            if "run" not in step:
                continue
            env = {**job_env, **{str(k): str(v) for k, v in (step.get("env") or {}).items()}}
            steps.append(
                WorkflowStep(
                    path, str(job_name), str(step.get("name") or f"step {index}"), str(step["run"]), env
                )
            )
    return steps


def is_install(step: WorkflowStep) -> bool:
    """The package install step, which an editable install of the clone (PYTHONPATH) stands for."""
    return bool(re.search(r"\bpip install\b", step.run))


def cron_interval_seconds(path: Path) -> float:
    """The shortest gap between two runs of the workflow's schedule (minutes field: ``17,47 * * * *``)."""
    data = load_workflow(path)
    triggers = data.get("on") or data.get(True) or {}  # PyYAML reads the key `on` as True
    schedules = (triggers.get("schedule") if isinstance(triggers, dict) else None) or []
    gaps: list[float] = []
    for entry in schedules:
        minutes_field = str(entry.get("cron", "")).split()[0] if entry.get("cron") else ""
        if minutes_field.startswith("*/"):
            gaps.append(60 * float(minutes_field[2:]))
        elif minutes_field and all(part.isdigit() for part in minutes_field.split(",")):
            minutes = sorted(int(part) for part in minutes_field.split(","))
            cyclic = [*minutes, minutes[0] + 60]
            gaps.append(60 * min(b - a for a, b in itertools.pairwise(cyclic)))
    if not gaps:
        raise WiringError(f"{path}: no schedule: the rehearsal needs the promotion's cron interval")
    return min(gaps)


@dataclass(frozen=True)
class StepRun:
    """What running one step did."""

    step: WorkflowStep
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def last_line(self) -> str:
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return lines[-1][:300] if lines else ""


def run_step(
    step: WorkflowStep,
    context: Context,
    *,
    cwd: Path,
    runner_env: Mapping[str, str],
    timeout: float = 900,
) -> StepRun:
    """Run the step's script as GitHub's runner does (``bash --noprofile --norc -eo pipefail``)."""
    env = {**runner_env}
    for name, value in step.env.items():
        env[name] = context.substitute(value, step.where)
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step.run],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return StepRun(step, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def with_job_files(runner_env: Mapping[str, str], temp: Path) -> dict[str, str]:
    """What GitHub's runner gives each step of a job: ``RUNNER_TEMP``, the ``GITHUB_ENV`` and
    ``GITHUB_PATH`` files, and what the job's earlier steps wrote to them (``NAME=value`` lines;
    added folders go in front of PATH, after the rehearsal's pulumi shim, which stays first)."""
    temp.mkdir(parents=True, exist_ok=True)
    env_file, path_file = temp / "github_env", temp / "github_path"
    env_file.touch()
    path_file.touch()
    env = {**runner_env, "RUNNER_TEMP": str(temp), "GITHUB_ENV": str(env_file), "GITHUB_PATH": str(path_file)}
    for line in env_file.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name:
            env[name] = value
    added = [folder for folder in path_file.read_text().splitlines() if folder.strip()]
    if added:
        shim, _, rest = env.get("PATH", "").partition(os.pathsep)
        env["PATH"] = os.pathsep.join([shim, *reversed(added), rest])
    return env


def runner_environment(clone: Path, base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The runner's own variables: PATH with this interpreter, the tools and the shim; the clone installed."""
    path = os.pathsep.join([str(SHIM_DIR), str(Path(sys.executable).parent), base.get("PATH", os.defpath)])
    env = {
        name: value
        for name, value in base.items()
        if not name.startswith(("GITHUB_", "ROLLOUT_", "PULUMI_", "AWS_", "SLACK_", "PAGERDUTY_"))
    }
    env.update({"PATH": path, "PYTHONPATH": str(clone), "CI": "true", "GITHUB_WORKSPACE": str(clone)})
    env.update(extra)
    return env
