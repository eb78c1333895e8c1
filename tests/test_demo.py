"""`make demo`: a short dress rehearsal. Its end-to-end run is the rehearsal's (tests/rehearsal); here, what
the demo asks the rehearsal for, and its one-line failure without a running environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv import demo
from devenv.rehearsal.faults import parse_faults
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan


def test_demo_is_a_short_rehearsal_of_the_shipped_plan_with_one_fault(tmp_path: Path) -> None:
    arguments = demo.demo_arguments(None, tmp_path)
    assert "--plan" not in arguments  # the shipped plan
    faults = parse_faults(arguments[arguments.index("--faults") + 1], load_plan(DEFAULT_PLAN), ("a", "b"))
    assert len(faults) == 1
    # Ten calendar weeks in under four minutes of wall time.
    assert 10 * 7 * 86400 / float(arguments[arguments.index("--scale") + 1]) < 240


def test_demo_without_a_running_environment_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = demo.main(["--state-dir", str(tmp_path / "nothing-here")])
    printed = capsys.readouterr()
    assert code == 2
    assert printed.out == ""
    assert printed.err.count("\n") == 1
    assert "is not running" in printed.err
    assert f"rollout env up --state-dir {tmp_path / 'nothing-here'}" in printed.err
