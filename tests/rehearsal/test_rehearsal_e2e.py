"""The dress rehearsal end to end on the session's local environment (real API servers, Pulumi CLI and
provider, Prometheus, Alertmanager, PostgreSQL, moto, git; GitHub's API is the local stand-in).

One full default run (the issue's acceptance: beta to 100% in both regions with the default faults,
each answered in time, git and the clusters agreeing after every step), and short runs that must fail
with a report saying why: a wiring fault put back, a provider that returns nothing, a broken
rollback apply. The short runs stop as soon as the rollout is stuck, so they cost little.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from pages.headless import FLAGS as CHROMIUM_FLAGS
from pages.headless import chromium

from devenv.local import LocalEnvironment
from devenv.rehearsal.cmd import DEFAULT_RESPONSE_SCALE
from devenv.rehearsal.faults import DEFAULT_SPEC, parse_faults
from devenv.rehearsal.report import write_report
from devenv.rehearsal.run import ROOT, STACKS, Options, Rehearsal
from devenv.rehearsal.scale import Scales
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

# `make test-rehearsal` runs these; `make test` (CI) leaves them out: the default run does not pass yet
# (the majority stage's go criterion needs a passing failover drill report, and the rehearsal runs the
# drills only at the end; docs/rehearsal.md), and together they take about 30 minutes.
pytestmark = [pytest.mark.e2e, pytest.mark.rehearsal]
DEFAULT_SCALE, RESPONSE_SCALE = 10080.0, DEFAULT_RESPONSE_SCALE


def rehearse(env: LocalEnvironment, report_dir: Path, faults: str, scale: float, **options: object) -> dict:
    plan = load_plan(DEFAULT_PLAN)
    chosen = parse_faults(faults, plan, tuple(STACKS.values()))
    record = Rehearsal(
        env.info, Options(DEFAULT_PLAN, Scales(scale, RESPONSE_SCALE), report_dir, chosen, **options)
    ).run()  # type: ignore[arg-type]
    html, data = write_report(record, plan, report_dir)
    assert html.exists()
    return json.loads(data.read_text())


def test_the_default_rehearsal_reaches_100_percent_with_every_fault_answered_in_time(
    local_env: LocalEnvironment,
    tmp_path: Path,
) -> None:
    report = rehearse(local_env, tmp_path, DEFAULT_SPEC, DEFAULT_SCALE)
    assert report["verdict"] == "PASS", report["failures"]
    # Both regions at 100%, live.
    last = {w["stack"]: w for w in report["weights"]}
    assert {stack: (row["stage"], row["live"]) for stack, row in last.items()} == {
        s: ("full", 100) for s in STACKS
    }
    # Every fault got its response inside its window.
    assert len(report["faults"]) == len(parse_faults(DEFAULT_SPEC, load_plan(DEFAULT_PLAN), ("a", "b")))
    assert all(f["ok"] and f["rollback_seconds"] <= f["window_seconds"] for f in report["faults"]), report[
        "faults"
    ]
    # Git and the clusters agreed after every step.
    assert report["checks"] and not [c for c in report["checks"] if c["problems"]]
    # The seed's timeline held and every measured trigger keeps its production budget.
    assert report["timeline"] and all(row["ok"] for row in report["timeline"])
    assert all(b["ok"] for b in report["budgets"])
    # The report opens in a browser with its plots and no script errors.
    dom = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            "--virtual-time-budget=20000",
            "--dump-dom",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    assert re.search(r'<pre id="script-errors"[^>]*></pre>', dom)
    assert len(re.findall(r'<figure class="plot" id="[^"]+"><svg', dom)) >= 2


def _source_with(tmp_path: Path, path: str, old: str, new: str) -> Path:
    """A copy of this project's HEAD with one shipped file edited (a wiring fault put back)."""
    source = tmp_path / "source"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(source)], check=True)
    target = source / path
    text = target.read_text()
    assert old in text, f"{path} has no {old!r} to break"
    target.write_text(text.replace(old, new))
    subprocess.run(
        ["git", "-C", str(source), "commit", "-qam", f"put back a wiring fault in {path}"],
        check=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            "PATH": "/usr/bin:/bin",
        },
    )
    return source


def test_a_wiring_fault_put_back_fails_the_rehearsal_saying_why(
    local_env: LocalEnvironment,
    tmp_path: Path,
) -> None:
    """The promote workflow naming its Prometheus URL by a variable no code reads (issue 12)."""
    source = _source_with(
        tmp_path, ".github/workflows/rollout-promote.yml", "ROLLOUT_PROMETHEUS_URL:", "PROMETHEUS_URL:"
    )
    report = rehearse(local_env, tmp_path / "report", "none", 60480.0, source=source)
    assert report["verdict"] == "FAIL"
    assert any("stuck at beta" in f and "prometheus" in f.lower() for f in report["failures"]), report[
        "failures"
    ]


def test_a_provider_returning_nothing_fails_the_rehearsal_saying_why(
    local_env: LocalEnvironment,
    tmp_path: Path,
) -> None:
    report = rehearse(local_env, tmp_path, "none", 60480.0, silent_sources=("crash_reporter",))
    assert report["verdict"] == "FAIL"
    assert any("stuck at beta" in f and "crash" in f.lower() for f in report["failures"]), report["failures"]


def test_a_broken_rollback_apply_fails_the_rehearsal_saying_why(
    local_env: LocalEnvironment,
    tmp_path: Path,
) -> None:
    report = rehearse(local_env, tmp_path, "limited@0+10%:database-loss", 60480.0, break_apply=True)
    assert report["verdict"] == "FAIL"
    (fault,) = report["faults"]
    assert fault["ok"] is False and fault["stable_at"] is None
    assert any("database-loss" in f for f in report["failures"]), report["failures"]
