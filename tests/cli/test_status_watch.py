"""`rollout status --watch`: refreshes per stack and region, reads git afresh each time, and says why
the cluster's weights are unknown (the client's own message, in one line)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_fixtures import clone, git
from click.testing import CliRunner

from rollout_policies.cli.main import cli
from rollout_policies.stack_file import read_config, read_state, stacks_in

STACKS = [stack for stack in stacks_in(Path(__file__).resolve().parents[2]) if stack.startswith("prod-")]


def rollout(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def refreshes(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_json_is_one_document_per_refresh_with_region_and_git_weights(repo: Path) -> None:
    done = rollout("status", "--repo", str(repo), "--watch", "--count", "3", "--interval", "0", "--json")
    assert (done.returncode, done.stderr) == (0, "")
    documents = refreshes(done.stdout)
    assert len(documents) == 3 and all(doc["refreshed_at"].endswith("Z") for doc in documents)
    for row in documents[-1]["stacks"]:
        path = repo / f"Pulumi.{row['stack']}.yaml"
        state = read_state(path)
        assert row["region"] == read_config(path)["markethub-rollout:region"]
        assert (row["stage"], row["step"]) == (state.stage, state.step)
        assert row["weights"] == {colour.value: weight for colour, weight in state.weights.items()}
        assert (row["live_weights"], row["drift"]) == (None, "unknown")
        assert row["live_unknown_why"] == "not asked: --live none (--live kubernetes reads the cluster)"
    assert [row["stack"] for row in documents[0]["stacks"]] == STACKS


def test_an_unreachable_cluster_is_unknown_with_the_reason(repo: Path, tmp_path: Path) -> None:
    """The first stack's context points at a loopback port nobody listens on; the second stack's
    context is missing from the kubeconfig."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: connections are refused
    reachable, missing = STACKS
    context = read_config(repo / f"Pulumi.{reachable}.yaml")["kubernetes:context"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
                "current-context": context,
            }
        )
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    args = ("status", "--repo", str(repo), "--live", "kubernetes", "--watch", "--count", "1")
    done = rollout(*args, "--json", env=env)
    assert (done.returncode, done.stderr) == (0, "")
    (document,) = refreshes(done.stdout)
    why = {row["stack"]: row["live_unknown_why"] for row in document["stacks"]}
    assert f"port={port}" in why[reachable] and "Connection refused" in why[reachable]
    assert why[missing].startswith(f"kubeconfig context {missing}: ConfigException: ")
    assert all("\n" not in reason for reason in why.values())
    health = {row["stack"]: row["workloads_unknown_why"] for row in document["stacks"]}
    assert health[reachable].startswith("deployment ") and "Connection refused" in health[reachable]
    assert health[missing] == why[missing]

    text = rollout(*args, env={**env, "COLUMNS": "300"})
    assert text.returncode == 0
    assert f"{reachable}: live weights unknown: {why[reachable]}" in text.stdout.splitlines()
    assert f"{reachable}: workloads: unknown ({health[reachable]})" in text.stdout.splitlines()
    assert f"{reachable}: gates: not evaluated: --gates not asked" in text.stdout.splitlines()


def test_each_refresh_reads_git_again(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the two refreshes someone else rolls the first stack back and pushes."""
    other = clone(Path(git(repo, "remote", "get-url", "origin").strip()), tmp_path / "other")
    stack = STACKS[0]

    def someone_rolls_back(seconds: float) -> None:
        done = rollout("rollback", "--repo", str(other), "--stack", stack, "--reason", "watch test")
        assert done.returncode == 0, done.stderr

    monkeypatch.setattr(time, "sleep", someone_rolls_back)
    result = CliRunner().invoke(
        cli, ["status", "--repo", str(repo), "--watch", "--count", "2", "--json"], catch_exceptions=False
    )
    before, after = ({row["stack"]: row for row in doc["stacks"]} for doc in refreshes(result.stdout))
    assert (before[stack]["last_decision"], before[stack]["rolled_back"]) == (None, False)
    assert (after[stack]["last_decision"], after[stack]["rolled_back"]) == ("rollback", True)
    assert after[stack]["last_decision_commit"] == git(other, "rev-parse", "HEAD").strip()
    assert after[STACKS[1]]["last_decision"] is None


def test_count_without_watch_is_bad_input(repo: Path) -> None:
    done = rollout("status", "--repo", str(repo), "--count", "2")
    assert (done.returncode, done.stderr) == (2, "rollout: error: --count: only with --watch\n")
