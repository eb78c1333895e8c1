"""Runs one job of a shipped workflow here, step by step, the way a GitHub-hosted runner would.

A stand-in for GitHub Actions, which cannot run on this machine. ``run:`` steps run with
``bash --noprofile --norc -eo pipefail`` (the runner's default shell) in the checkout, with the
job's and the step's ``env:`` and ``${{ ... }}`` expanded from the values the test gives (secrets
and variables mapped to the local environment); ``$GITHUB_ENV``, ``$GITHUB_PATH`` and
``$GITHUB_OUTPUT`` carry over between steps as on GitHub. ``uses:`` steps are the marketplace
actions, which cannot run here; each has a local equivalent below:

- ``actions/checkout``: the test clones the repository at the event's commit beforehand;
- ``actions/setup-python``: the test's virtualenv, which has the package, is on PATH;
- ``actions/create-github-app-token``: outputs the token the forge stand-in accepts as the App's;
- ``actions/upload-artifact``: records the path it would upload.

The one ``run:`` step left out is the package install (``pip install -e .``): the virtualenv already
holds the package, and installing it from the temporary checkout would repoint the virtualenv.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shipped import Step, expand, workflow_steps

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"


@dataclass
class StepRun:
    step: Step
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class JobRun:
    steps: list[StepRun] = field(default_factory=list)
    uploaded: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.steps)

    def step(self, text: str) -> StepRun:
        """The run of the step whose run: script or name contains ``text``."""
        found = [s for s in self.steps if text in (s.step.run or "") or text in s.step.name]
        assert found, f"no step ran with {text!r}: {[s.step.name for s in self.steps]}"
        return found[-1]

    def report(self) -> str:
        return "\n".join(f"--- {s.step.where}: exit {s.returncode}\n{s.output[-4000:]}" for s in self.steps)


def run_job(
    workflow: str,
    job: str,
    *,
    workspace: Path,
    values: Mapping[str, str],
    runner_env: Mapping[str, str],
    matrix: Mapping[str, object] | None = None,
    timeout: float = 900.0,
) -> JobRun:
    """Run the job's steps in order; a failing step stops the job except ``if: always()`` steps."""
    steps = [
        s
        for s in workflow_steps([WORKFLOWS / workflow])
        if s.job == job and dict(s.matrix) == dict(matrix or {})
    ]
    assert steps, f"{workflow}: no job {job} with matrix {matrix}"
    raw_ifs = _step_conditions(workflow, job)
    values = dict(values)
    scratch = workspace.parent / f"{workspace.name}-runner"
    scratch.mkdir(exist_ok=True)
    exported: dict[str, str] = {}
    extra_path: list[str] = []
    result = JobRun()
    failed = False
    for step in steps:
        condition = raw_ifs[step.index]
        if failed and "always()" not in (condition or ""):
            continue
        if step.uses:
            _use(step, values, workspace, result)
            continue
        assert step.run is not None
        if "pip install" in step.run:
            continue
        files = {
            name: scratch / f"{name.lower()}-{step.index}"
            for name in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT")
        }
        for path in files.values():
            path.write_text("")
        env = {
            **runner_env,
            **exported,
            **{k: str(v) for k, v in files.items()},
            "RUNNER_TEMP": str(scratch),
            "GITHUB_WORKSPACE": str(workspace),
            **{name: expand(value, values, step) for name, value in step.env.items()},
        }
        env["PATH"] = os.pathsep.join([*extra_path, env.get("PATH", os.defpath)])
        script = expand(step.run, values, step)
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        result.steps.append(StepRun(step, done.returncode, done.stdout, done.stderr))
        exported.update(_pairs(files["GITHUB_ENV"].read_text()))
        extra_path = [
            line.strip() for line in files["GITHUB_PATH"].read_text().splitlines() if line.strip()
        ] + extra_path
        if step.id:
            for key, value in _pairs(files["GITHUB_OUTPUT"].read_text()).items():
                values[f"steps.{step.id}.outputs.{key}"] = value
        failed = failed or done.returncode != 0
    return result


def _use(step: Step, values: dict[str, str], workspace: Path, result: JobRun) -> None:
    action = (step.uses or "").split("@")[0]
    if action == "actions/create-github-app-token":
        for needed in step.with_.values():
            expand(str(needed), values, step)  # its inputs must be among the given secrets and vars
        values[f"steps.{step.id}.outputs.token"] = values["app token"]
    elif action == "actions/upload-artifact":
        result.uploaded.append(workspace / expand(str(step.with_["path"]), values, step))
    elif action in ("actions/checkout", "actions/setup-python"):
        for value in step.with_.values():
            expand(str(value), values, step)
    else:
        raise AssertionError(f"{step.where}: no local equivalent of {step.uses}")


def _pairs(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            pairs[name.strip()] = value
    return pairs


def _step_conditions(workflow: str, job: str) -> list[str | None]:
    from shipped import load_workflow

    data = load_workflow(WORKFLOWS / workflow)
    return [raw.get("if") for raw in data["jobs"][job]["steps"]]
