"""The shipped GitHub Actions workflows call commands and flags the CLI really has; CODEOWNERS is current.

(actionlint checks the workflows' syntax and expressions in `make lint`; these tests check that what
they run still matches the code.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import yaml

from rollout_policies.cli.main import cli
from rollout_policies.gitops.owners import (
    CODEOWNERS_FILE,
    DEFAULT_REVIEWERS_FILE,
    load_handles,
    render_codeowners,
    reviewers_for,
)
from rollout_policies.gitops.stack_config import config_name, stacks_in
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def _workflow(name: str) -> dict[str, object]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def _runs(workflow: dict[str, object]) -> list[str]:
    jobs = workflow["jobs"]
    assert isinstance(jobs, dict)
    return [step["run"] for job in jobs.values() for step in job["steps"] if "run" in step]


def _rollout_calls(text: str) -> list[list[str]]:
    calls = []
    for line in text.replace("\\\n", " ").splitlines():  # a shell line continuation joins two lines
        match = re.search(r"(?:^|\s)rollout\s+(.*)$", line.strip())
        if match and not line.strip().startswith("#"):
            calls.append(shlex.split(match.group(1), comments=True))
    return calls


def _command(path: list[str]) -> click.Command:
    context = click.Context(cli)
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group), f"{' '.join(path)}: {name} under a plain command"
        found = command.get_command(context, name)
        assert found is not None, f"rollout {' '.join(path)}: no such command"
        command = found
    return command


def _flags(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


def test_every_rollout_call_in_the_workflows_uses_real_commands_and_flags() -> None:
    checked = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        workflow = _workflow(path.name)
        matrix_drills = []
        for job in workflow["jobs"].values():  # type: ignore[union-attr]
            matrix_drills += job.get("strategy", {}).get("matrix", {}).get("drill", [])
        for run in _runs(workflow):
            for call in _rollout_calls(run):
                names = [call[0]]
                if call[0] == "drill":
                    names = [["drill", drill] for drill in matrix_drills]  # type: ignore[list-item]
                elif call[0] == "deploy":
                    names = [["deploy", call[1]]]  # type: ignore[list-item]
                for name in names:
                    command = _command(name if isinstance(name, list) else [name])
                    for token in call[1:]:
                        if token.startswith("--"):
                            assert token in _flags(command), f"{path.name}: rollout {name}: no {token}"
                    checked += 1
    assert checked >= 4  # promote, status, and the two drills


def test_scheduled_drills_run_both_drills_for_real() -> None:
    workflow = _workflow("rollout-drills.yml")
    job = workflow["jobs"]["drill"]  # type: ignore[index]
    assert sorted(job["strategy"]["matrix"]["drill"]) == ["backup-restore", "region-failover"]
    assert any("--execute" in run for run in _runs(workflow))


def test_committed_codeowners_matches_the_plan_and_the_stack_configs() -> None:
    plan = load_plan(DEFAULT_PLAN)
    reviewers = reviewers_for(plan, load_handles(ROOT / DEFAULT_REVIEWERS_FILE), str(DEFAULT_REVIEWERS_FILE))
    expected = render_codeowners(plan, reviewers, [config_name(s) for s in stacks_in(ROOT)])
    assert (ROOT / CODEOWNERS_FILE).read_text() == expected, (
        "run `python -m rollout_policies.gitops.owners` and commit .github/CODEOWNERS"
    )
