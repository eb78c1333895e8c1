"""Every read command accepts --json, and its output parses and carries the command's facts.

The commands are enumerated from the CLI itself (the lazy group and the rig's plugins), so a new
command fails here until it is classified: a read command needs --json and an invocation below; a
command that changes things is named in CHANGES with what it changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from rollout_policies.cli.main import cli
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.stack_file import read_state, stacks_in

ROOT = Path(__file__).resolve().parents[2]

# Commands that change something (git, a cluster, a forge, a report folder) or run as a server.
CHANGES = {
    "promote": "pushes promotion branches and opens pull requests",
    "report": "writes a stack's HTML gate report and its JSON data to --html",
    "rollback": "commits to main and applies; closes the stacks' open promotion pull requests",
    "abort": "commits a rollback with paused: true to main and applies; closes open promotion pull requests",
    "release start": "commits the next release (colours swapped, first stage step 0) to main",
    "release finalize": "commits released: true to main",
    "retry": "commits the rolled-back stage's step 0 to main",
    "pause": "commits paused: true to main",
    "resume": "commits paused: false to main",
    "bootstrap health-checks": "creates Route 53 health checks, writes their ids into the stack configs",
    "deploy preview": "runs pulumi preview and comments on the pull request",
    "deploy up": "runs pulumi up",
    "audience select": "writes the cohort file (cohorts/STAGE.yaml) to commit",
    "drill region-failover": "fails DNS over (with --execute) and writes a report",
    "drill backup-restore": "restores into a scratch database and writes a report",
    "drill backup": "takes a pgBackRest backup into the repository",
    "serve": "a long-running webhook server that rolls back",
    "watch": "a long-running poller that rolls back",
    "env up": "starts the local environment",
    "env down": "stops the local environment",
    "rehearse": "runs the whole plan on the local environment",
}


def leaf_commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from leaf_commands(command, f"{path} ")
        else:
            yield path, command


COMMANDS = dict(leaf_commands(cli))
READ_COMMANDS = sorted(set(COMMANDS) - set(CHANGES))


def invoke(argv: list[str]) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def check_status(tmp_path: Path, repo: Path) -> None:
    code, rows = invoke(["status", "--repo", str(repo), "--json"])
    shipped = stacks_in(ROOT)
    prod = [s for s in shipped if s.startswith("prod-")]
    assert code == 0 and [row["stack"] for row in rows] == prod
    for row in rows:
        state = read_state(repo / f"Pulumi.{row['stack']}.yaml")
        assert (row["stage"], row["step"], row["weights"]) == (
            state.stage,
            state.step,
            {colour.value: weight for colour, weight in state.weights.items()},
        )
        assert row["candidate"]["version"] == state.candidate.version
        assert row["drift"] == "unknown" and row["pending_promotions"] == []
        assert row["live_unknown_why"].startswith("not asked: --live none")


def check_evaluate(tmp_path: Path, repo: Path) -> None:
    plan = load_plan(DEFAULT_PLAN)
    beta = plan.stages[0]
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(
        "observed_at: 2026-11-28T08:59:00Z\nstage_started_at: 2026-11-28T08:00:00Z\nmetrics: {}\n"
    )
    now = "2026-11-28T09:00:00Z"
    code, data = invoke(
        ["evaluate", "--stage", beta.id, "--metrics-file", str(metrics), "--now", now, "--json"]
    )
    # no measurements and one hour into a stage of days: never a promotion
    assert code == 0 and (data["plan"], data["stage"]) == (plan.name, beta.id)
    assert data["decision"] == "hold"
    assert {gate["metric"] for gate in data["gates"]} == {gate.metric for gate in beta.gates}


def check_plan_validate(tmp_path: Path, repo: Path) -> None:
    plan = load_plan(DEFAULT_PLAN)
    code, data = invoke(["plan", "validate", str(DEFAULT_PLAN), "--json"])
    assert code == 0 and data["valid"] is True
    assert (data["plan"], data["stages"], data["triggers"]) == (
        plan.name,
        [stage.id for stage in plan.stages],
        len(plan.triggers),
    )
    assert data["gating_gates"] + data["monitor_only_gates"] == data["gates"] > 0


def check_plan_show(tmp_path: Path, repo: Path) -> None:
    plan = load_plan(DEFAULT_PLAN)
    code, data = invoke(["plan", "show", "--json"])
    assert code == 0 and data["name"] == plan.name
    assert [stage["id"] for stage in data["stages"]] == [stage.id for stage in plan.stages]


def check_env_status(tmp_path: Path, repo: Path) -> None:
    code, data = invoke(["env", "status", "--state-dir", str(tmp_path / "env"), "--json"])
    assert code == 0 and (data["up"], data["components"]) == (False, [])
    assert data["env_file"].startswith(str(tmp_path / "env"))


def check_digest(tmp_path: Path, repo: Path) -> None:
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text("observed_at: 2026-11-28T08:59:00Z\nmetrics: {}\n")
    code, data = invoke(
        ["digest", "--repo", str(repo), "--period", "weekly", "--metrics-file", str(metrics),
         "--now", "2026-11-28T09:00:00Z", "--json"]
    )  # fmt: skip
    prod = [s for s in stacks_in(ROOT) if s.startswith("prod-")]
    assert code == 0 and (data["period"], data["until"]) == ("weekly", "2026-11-28T09:00:00Z")
    assert [row["stack"] for row in data["stacks"]] == prod
    # no measurements: no gate is on target, and each stack's gates are a risk
    assert data["kpis"]["on_target"] == 0 and data["kpis"]["gates"] > 0
    assert len(data["risks"]) == len(prod)


CHECKS: dict[str, Callable[[Path, Path], None]] = {
    "digest": check_digest,
    "status": check_status,
    "evaluate": check_evaluate,
    "plan validate": check_plan_validate,
    "plan show": check_plan_show,
    "env status": check_env_status,
}


def test_every_command_is_a_read_command_with_a_check_or_a_named_change() -> None:
    assert set(CHANGES) <= set(COMMANDS), "CHANGES names a command the CLI does not have"
    assert set(READ_COMMANDS) == set(CHECKS), "a read command needs --json and a check in CHECKS"


@pytest.mark.parametrize("path", READ_COMMANDS)
def test_read_command_has_a_json_flag(path: str) -> None:
    assert "--json" in [opt for param in COMMANDS[path].params for opt in getattr(param, "opts", [])]


@pytest.mark.parametrize("path", sorted(CHECKS))
def test_read_command_prints_json_with_its_facts(path: str, tmp_path: Path, repo: Path) -> None:
    CHECKS[path](tmp_path, repo)
