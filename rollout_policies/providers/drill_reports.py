"""Drill results from the drill reports committed in the rollout repository (``reports/drills/``).

The drills commit ``reports/drills/<drill>/<stamp>.json`` (runbooks/report.py); a drill criterion of
the plan reads the newest of them through ``Evidence.drills``. A report that cannot be read is left
out, so it never counts as a pass: with no readable report the criterion is unknown.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from rollout_policies.core.measurement import DrillResult
from rollout_policies.plan.model import DRILLS

# Where the drills commit their reports, relative to the repository's root.
DRILL_REPORTS = Path("reports/drills")


def read_drill_results(folder: Path) -> tuple[DrillResult, ...]:
    """Every readable report of the known drills under ``folder`` (``<drill>/*.json``)."""
    found = []
    for drill in DRILLS:
        for path in sorted((folder / drill).glob("*.json")):
            result = _result(path, drill)
            if result is not None:
                found.append(result)
    return tuple(found)


def _result(path: Path, drill: str) -> DrillResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        finished = datetime.fromisoformat(str(data["finished_at"]).replace("Z", "+00:00"))
        if data.get("drill") != drill or finished.tzinfo is None:
            return None
        return DrillResult(drill=drill, verdict=str(data["verdict"]), finished_at=finished, report=str(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None
