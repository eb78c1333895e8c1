"""The rehearsal report renders in headless Chromium: one self-contained file, its plots, no script errors.

The record here is built by hand (a short made-up run) so the page is checked without clusters; the
end-to-end test checks a real run's report the same way.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from pages.headless import FLAGS as CHROMIUM_FLAGS
from pages.headless import chromium

from devenv.rehearsal.faults import FaultRecord, parse_faults
from devenv.rehearsal.report import write_report
from devenv.rehearsal.run import Event, Record
from devenv.rehearsal.scale import Scales
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan


def sample_record() -> Record:
    plan = load_plan(DEFAULT_PLAN)
    record = Record(datetime(2026, 12, 2, tzinfo=UTC), Scales(10080, 2), 4.0, 1800.0)
    for t in range(0, 120, 2):
        green = 0 if t < 40 else 2 if t < 60 else 10 if t < 80 else 50 if t < 100 else 100
        for stack in ("local-us-east-1", "local-us-west-2"):
            record.weights.append({"t": t, "stack": stack, "region": "r", "live": green, "git": green})
    record.events.append(Event(41.0, 4.8, "merge", "local-us-east-1", "#1 beta -> limited", "abc12345", "#1"))
    (fault,) = parse_faults("beta+5%:api-errors", plan, ("us-east-1", "us-west-2"))
    faulted = FaultRecord(
        fault, "us-east-1", injected_at=10.0, detected_at=35.0, responded_at=36.0, stable_at=40.0
    )
    faulted.window_seconds, faulted.ok, faulted.detail = 60.0, True, "stable 30s after the fault"
    record.faults.append(faulted)
    record.evidence.append(
        {
            "metric": "api_error_rate",
            "title": "API error rate",
            "unit": "%",
            "target": 0.1,
            "alert": 1.0,
            "tracks": {"candidate": [(0, 0.0), (20, 50.0), (40, 0.0)], "stable": [(0, 0.0), (40, 0.0)]},
            "bounds": [{"name": "upper bound", "points": [(0, 20.0), (40, 3.0)]}],
        }
    )
    record.stages["timeline"] = [
        {
            "stack": "local-us-east-1",
            "stage": "limited",
            "commit": "abc",
            "day": 14.3,
            "seed_weeks": "3-4",
            "due_day": 14.0,
            "late": "7.0 h",
            "in_seed_weeks": True,
            "within_interval": True,
            "ok": True,
        }
    ]
    record.verdict, record.wall_seconds = "PASS", 120.0
    return record


def test_report_json_holds_the_same_data_as_the_page(tmp_path: Path) -> None:
    html, data = write_report(sample_record(), load_plan(DEFAULT_PLAN), tmp_path)
    loaded = json.loads(data.read_text())
    assert loaded["verdict"] == "PASS"
    assert loaded["faults"][0]["rollback_seconds"] == 30.0
    assert loaded["scales"]["week_seconds"] == 60.0
    page = html.read_text()
    assert "Verdict: PASS" in page and "beta -&gt; limited" in page


def test_report_is_self_contained(tmp_path: Path) -> None:
    html, _ = write_report(sample_record(), load_plan(DEFAULT_PLAN), tmp_path)
    page = html.read_text()
    assert not re.search(r"<script[^>]+src=", page), "every script is inline"
    assert not re.search(r"<link[^>]+href=", page), "no stylesheet from elsewhere"


def test_report_renders_its_plots_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    html, _ = write_report(sample_record(), load_plan(DEFAULT_PLAN), tmp_path)
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, "--virtual-time-budget=15000", "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    errors = re.search(r'<pre id="script-errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == "", errors.group(1) if errors else dom[:500]
    figures = dict(re.findall(r'<figure class="plot" id="([^"]+)">(.*?)</figure>', dom, re.S))
    assert sorted(figures) == ["plot-evidence-0", "plot-weights"]
    for plot, markup in figures.items():
        assert "<svg" in markup and "<path" in markup, f"{plot} has no drawn svg"
    assert re.search(r'<body[^>]*data-plots="2"', dom), "the page's script counted its plots"
    assert "local-us-east-1 live" in figures["plot-weights"] and "api-errors" in figures["plot-weights"]
