"""Rollback latency benchmark: `rollout rollback` from start until the commit is on the remote's main.

Run: ``python -m bench.rollback [--runs N]``. Each run makes a fresh bare remote and clone (local
disk), puts a stack at 5% candidate, then times ``GitOps.rollback`` (fetch, read, one commit, leased
push, fast-forward of the checkout). The apply step (``pulumi up --target`` of the HTTPRoute) is not
in this figure: it needs the local environment and is measured by the end-to-end benchmark once the
Pulumi applier is wired (see docs/gitops.md).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

CONFIG = """\
config:
  markethub-rollout:rollout:
    stage: limited
    step: 1
    stable:    {colour: blue,  version: 4.12.0}
    candidate: {colour: green, version: 5.0.0}
    weights:   {blue: 95, green: 5}
    stageStartedAt: "2026-11-20T09:00:00Z"
    stepStartedAt:  "2026-11-21T09:00:00Z"
"""


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def one_run(root: Path, plan_path: Path) -> float:
    bare, clone = root / "remote.git", root / "clone"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True, capture_output=True)
    _git(clone, "config", "user.name", "bench")
    _git(clone, "config", "user.email", "bench@localhost")
    (clone / "Pulumi.prod.yaml").write_text(CONFIG)
    _git(clone, "add", ".")
    _git(clone, "commit", "-q", "-m", "seed")
    _git(clone, "push", "-q", "origin", "main")
    ops = GitOps(repo=GitRepo(clone), plan=load_plan(plan_path), actor="bench")
    start = time.perf_counter()
    outcome = ops.rollback(["prod"], reason="benchmark", now=datetime.now(UTC))
    elapsed = time.perf_counter() - start
    assert outcome.result == "rolled-back"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--plan", type=Path, default=DEFAULT_PLAN)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-rollback-") as scratch:
            times.append(one_run(Path(scratch), args.plan))
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"rollback to remote main, {args.runs} runs on {platform.node()} ({platform.machine()}):")
    median = statistics.median(times)
    print(f"  median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
