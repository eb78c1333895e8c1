"""The scheduled digest workflow, run as shipped: each of its crons, step by step
(``actions_runner``), in a clone of a team repository holding the production stacks.

The schedule, the step's environment and its ``rollout digest`` command come from
``.github/workflows/rollout-digest.yml``; nothing is typed in again. Stand-ins: GitHub Actions
itself (``actions_runner``) and Slack's webhook (``slack_receiver``); the metric sources are left
unset, so every gate reads a source error and the digest says so as risks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from actions_runner import WORKFLOWS, run_job
from shipped import ROOT, expressions, load_workflow, production_stacks, workflow_steps
from slack_receiver import SlackReceiver

from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

WORKFLOW = "rollout-digest.yml"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """A bare remote with the shipped production stacks and one pause decision made just now."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "-q", str(remote), str(seed)], check=True, capture_output=True)
    for path in production_stacks(ROOT):
        shutil.copy(path, seed / path.name)
    git(seed, "add", ".")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "seed")
    git(seed, "push", "-q", "origin", "main")
    stack = production_stacks(ROOT)[0].name.removeprefix("Pulumi.").removesuffix(".yaml")
    paused = subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", "pause", "--repo", str(seed), "--stack", stack,
         "--reason", "waiting for the iOS fix", "--actor", "oncall@laptop"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert paused.returncode == 0, paused.stderr
    return remote


def schedules() -> list[str]:
    triggers = load_workflow(WORKFLOWS / WORKFLOW)[True]  # yaml 1.1 reads the key `on` as True
    return [entry["cron"] for entry in triggers["schedule"]]


def test_each_scheduled_run_writes_and_posts_its_digest(team: Path, tmp_path: Path) -> None:
    slack = SlackReceiver()
    steps = [s for s in workflow_steps([WORKFLOWS / WORKFLOW]) if s.job == "digest"]
    needed = {
        e for s in steps for text in (*s.env.values(), *map(str, s.with_.values())) for e in expressions(text)
    }
    periods = {}
    try:
        for index, cron in enumerate(schedules()):
            # Every expression the job reads, empty unless given: the metric sources stay unset.
            values = {expression: "" for expression in needed}
            values |= {
                "secrets.SLACK_WEBHOOK_URL": slack.url,
                "github.event.schedule": cron,
                "github.run_id": "7",
            }
            workspace = tmp_path / f"run-{index}"
            subprocess.run(["git", "clone", "-q", str(team), str(workspace)], check=True)
            runner_env = {
                "PATH": os.pathsep.join(
                    [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
                ),
                "HOME": os.environ["HOME"],
                "CI": "true",
                "GITHUB_ACTIONS": "true",
            }
            run = run_job(WORKFLOW, "digest", workspace=workspace, values=values, runner_env=runner_env)
            assert run.ok, run.report()
            written = sorted((workspace / "digest").iterdir())
            assert [p.suffix for p in written] == [".html", ".md"], written
            periods[cron] = written[0].stem
            text = written[1].read_text()
            assert "**pause**" in text.split("## Decisions")[1]  # the decision made just now
            assert "paused; promotions wait for `rollout resume`" in text
            assert "source error" in text  # the unset sources, said as risks, never as on target
            assert "<h2>KPIs against targets</h2>" in written[0].read_text()
            assert run.uploaded == [workspace / "digest/"]
    finally:
        slack.close()
    assert sorted(periods.values()) == ["daily", "weekly"], periods
    plan = load_plan(DEFAULT_PLAN).name
    titles = {"daily": f"*Daily stand-up digest* {plan}:", "weekly": f"*Weekly executive report* {plan}:"}
    posted = slack.texts()
    assert len(posted) == len(periods)
    for text, cron in zip(posted, schedules(), strict=True):
        assert text.startswith(titles[periods[cron]]), text[:200]
