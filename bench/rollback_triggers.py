"""Automatic rollback benchmark: fault injected into green -> rollback commit on the remote's main.

Run: ``python -m bench.rollback_triggers [--runs 5] [--evaluation-interval 5s]``.

Each run starts one lane per trigger at once (``simulator.harness.AlertingLane``: traffic simulator,
Debian Prometheus with the plan's trigger rules at their REAL ``for:`` windows, Debian Alertmanager,
``rollout serve`` in its own process, a bare git remote), injects the trigger's fault into green and
times it until the rollback commit is on the remote's main. It also reads when Prometheus saw the
condition begin (the alert's ``activeAt``), so the figure splits into "condition held for the
window" and the pipeline's own overhead. Two lanes with no fault run for the whole benchmark, one
with the real windows and one with windows compressed 60x; neither may roll back.

The lanes run ``rollout serve --no-apply``: these figures end at the rollback commit. ``--applied``
measures instead, on the local environment, database loss -> stable weights live on the HTTPRoute
(the commit plus the Pulumi apply).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan
from simulator.harness import FAULTS, AlertingLane, GitRemote, LocalDeployment, compressed, window_of
from simulator.traffic import HTTPRouteWeights

ROOT = Path(__file__).resolve().parents[1]


def _active_at(lane: AlertingLane, trigger: str) -> float | None:
    body = httpx.get(f"{lane.prometheus.url}/api/v1/alerts", timeout=5).json()
    for alert in body["data"]["alerts"]:
        if alert["labels"].get("rollout_trigger") == trigger:
            return datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00")).timestamp()
    return None


def one_run(root: Path, plan: Plan, trigger: str, run: int, options: argparse.Namespace) -> dict[str, Any]:
    window = window_of(plan, trigger).total_seconds()
    with AlertingLane(
        root, plan, sessions_per_second=options.sessions, evaluation_interval=options.evaluation_interval,
        seed=run,
    ) as lane:  # fmt: skip
        lane.wait_for_traffic(timeout=60)
        time.sleep(5)
        if lane.remote.commits_since_seed():
            raise RuntimeError(f"{trigger} run {run}: rolled back before any fault")
        injected = time.time()
        lane.simulation.inject("green", **FAULTS[trigger])
        commit = lane.wait_for_rollback(timeout=window + 240, poll=0.1)
        landed = time.time()
        active = _active_at(lane, trigger)
        commits = len(lane.remote.commits_since_seed())
    if commit is None:
        raise RuntimeError(f"{trigger} run {run}: no rollback within {window + 240:g}s")
    return {
        "trigger": trigger,
        "run": run,
        "window_s": window,
        "inject_to_commit_s": round(landed - injected, 2),
        "inject_to_condition_s": None if active is None else round(active - injected, 2),
        "condition_to_commit_s": None if active is None else round(landed - active, 2),
        "commits": commits,
    }


class NoFaultLane(threading.Thread):
    """A lane with no fault for the whole benchmark; records whether anything rolled back."""

    def __init__(self, root: Path, plan: Plan, label: str, options: argparse.Namespace) -> None:
        super().__init__(name=f"no-fault-{label}", daemon=True)
        root.mkdir(parents=True, exist_ok=True)
        self.lane = AlertingLane(
            root, plan, sessions_per_second=options.sessions, evaluation_interval=options.evaluation_interval
        )
        self.label = label
        self.stop_event = threading.Event()
        self.started_at = 0.0
        self.ran_s = 0.0
        self.commits: list[str] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            with self.lane:
                self.lane.wait_for_traffic(timeout=60)
                self.started_at = time.time()
                self.stop_event.wait()
                self.ran_s = time.time() - self.started_at
                self.commits = self.lane.remote.commits_since_seed()
        except Exception as err:
            self.error = f"{type(err).__name__}: {err}"


def applied_runs(plan: Plan, options: argparse.Namespace) -> list[dict[str, Any]]:
    """On the local environment: database loss in green -> commit -> stable weights live on the HTTPRoute."""
    from devenv.local import LocalEnvironment

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-applied-") as tmp:
        root = Path(tmp)
        environment = LocalEnvironment(root / "env")
        environment.up()
        try:
            deployment = LocalDeployment(
                environment.info, root / "repo", ROOT, "local-us-east-1", "us-east-1"
            )
            try:
                for run in range(1, options.runs + 1):
                    if run > 1:
                        deployment.reset()
                    if deployment.live() != {"blue": 98.0, "green": 2.0}:
                        raise RuntimeError(f"applied run {run}: green is not at 2% before the fault")
                    weights = HTTPRouteWeights(str(deployment.kubeconfig), "markethub", "markethub-mobile")
                    with AlertingLane(
                        root / f"applied-{run}", plan, weights=weights, sessions_per_second=options.sessions,
                        evaluation_interval=options.evaluation_interval,
                        remote=GitRemote.existing(deployment.remote),
                        stack=deployment.stack, region=deployment.region,
                        serve_apply=("--apply", "--applier", "pulumi"), serve_env=deployment.env, seed=run,
                    ) as lane:  # fmt: skip
                        lane.wait_for_traffic(timeout=60)
                        time.sleep(3)
                        injected = time.time()
                        lane.simulation.inject("green", **FAULTS["database-connection-loss"])
                        if lane.wait_for_rollback(timeout=240, poll=0.1) is None:
                            raise RuntimeError(f"applied run {run}: no rollback commit")
                        committed = time.time()
                        deadline = time.monotonic() + 300
                        while deployment.live() != {"blue": 100.0, "green": 0.0}:
                            if time.monotonic() > deadline:
                                raise RuntimeError(f"applied run {run}: weights never went back to blue")
                            time.sleep(0.2)
                        live = time.time()
                    row = {
                        "trigger": "database-connection-loss",
                        "run": run,
                        "inject_to_commit_s": round(committed - injected, 2),
                        "commit_to_live_s": round(live - committed, 2),
                        "inject_to_live_s": round(live - injected, 2),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                deployment.destroy()
        finally:
            environment.down(strict=False)
    return rows


def _applied_summary(rows: list[dict[str, Any]]) -> list[str]:
    def cell(key: str) -> str:
        values = [r[key] for r in rows]
        return f"{statistics.median(values):.1f}s ({min(values):.1f}-{max(values):.1f})"

    return [
        "| trigger | runs | injection -> commit | commit -> stable weights live "
        "| injection -> stable weights live |",
        "| --- | --- | --- | --- | --- |",
        f"| Database Connection Loss (immediately) | {len(rows)} | {cell('inject_to_commit_s')} | "
        f"{cell('commit_to_live_s')} | {cell('inject_to_live_s')} |",
    ]


def _summary(rows: list[dict[str, Any]], plan: Plan) -> list[str]:
    lines = [
        "| trigger | window | runs | injection -> commit, median (min-max) | condition -> commit, median "
        "(min-max) | overhead past the window, median (max) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for trigger in plan.triggers:
        mine = [r for r in rows if r["trigger"] == trigger.id]
        if not mine:
            continue
        total = [r["inject_to_commit_s"] for r in mine]
        held = [r["condition_to_commit_s"] for r in mine if r["condition_to_commit_s"] is not None]
        window = mine[0]["window_s"]
        over = [h - window for h in held]
        lines.append(
            f"| {trigger.text} | {window:g}s | {len(mine)} | {statistics.median(total):.1f}s "
            f"({min(total):.1f}-{max(total):.1f}) | "
            + (f"{statistics.median(held):.1f}s ({min(held):.1f}-{max(held):.1f}) | " if held else "n/a | ")
            + (f"{statistics.median(over):.1f}s ({max(over):.1f}) |" if over else "n/a |")
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--evaluation-interval", default="5s", help="Prometheus rule evaluation interval")
    parser.add_argument("--sessions", type=float, default=10.0, help="simulated sessions per second per lane")
    parser.add_argument("--trigger", action="append", help="only these trigger ids (repeatable)")
    parser.add_argument("--no-fault-lanes", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--no-fault-minutes",
        type=float,
        default=30.0,
        help="keep the no-fault lanes running at least this long",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--applied",
        action="store_true",
        help="instead: on the local environment, database loss -> stable weights live on the HTTPRoute",
    )
    options = parser.parse_args(argv)
    plan = load_plan(DEFAULT_PLAN)
    if options.applied:
        began = time.time()
        applied = applied_runs(plan, options)
        print()
        print(
            f"# {options.runs} runs on the local environment (kwok API server, Pulumi CLI), evaluation "
            f"interval {options.evaluation_interval}; {datetime.now(UTC):%Y-%m-%d}; "
            f"total {(time.time() - began) / 60:.1f} min"
        )
        for line in _applied_summary(applied):
            print(line)
        if options.json:
            options.json.write_text(json.dumps(applied, indent=1) + "\n")
        return
    triggers = options.trigger or [t.id for t in plan.triggers]
    began = time.time()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-triggers-") as tmp:
        root = Path(tmp)
        quiet: list[NoFaultLane] = []
        if options.no_fault_lanes:
            quiet = [
                NoFaultLane(root / "no-fault-real", plan, "real windows", options),
                NoFaultLane(root / "no-fault-compressed", compressed(plan, 60), "windows / 60", options),
            ]
            for lane in quiet:
                lane.start()
        try:
            for run in range(1, options.runs + 1):
                with ThreadPoolExecutor(max_workers=len(triggers)) as pool:
                    futures = []
                    for trigger in triggers:
                        lane_root = root / f"run{run}-{trigger}"
                        lane_root.mkdir()
                        futures.append(pool.submit(one_run, lane_root, plan, trigger, run, options))
                    for future in futures:
                        row = future.result()
                        rows.append(row)
                        print(json.dumps(row), flush=True)
            for lane in quiet:
                while lane.is_alive() and (
                    not lane.started_at or time.time() - lane.started_at < options.no_fault_minutes * 60
                ):
                    time.sleep(5)
        finally:
            for lane in quiet:
                lane.stop_event.set()
            for lane in quiet:
                lane.join(timeout=120)
    print()
    print(
        f"# {options.runs} runs, evaluation interval {options.evaluation_interval}, scrape 1s, "
        f"group_wait 0s, {options.sessions:g} sessions/s per lane; {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"{datetime.now(UTC):%Y-%m-%d}; total {(time.time() - began) / 60:.1f} min"
    )
    for line in _summary(rows, plan):
        print(line)
    for lane in quiet:
        verdict = "no rollback" if not lane.commits and lane.error is None else f"ROLLED BACK {lane.commits}"
        print(f"no-fault lane ({lane.label}): {lane.ran_s / 60:.1f} min, {verdict}" + (
            f" error: {lane.error}" if lane.error else ""))  # fmt: skip
    if options.json:
        options.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
