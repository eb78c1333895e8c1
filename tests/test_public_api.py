"""The public API (``rollout_policies/__init__.py``): every name imports, is typed, and costs nothing
until used. ``make lint`` runs mypy on this file: each ``assert_type`` fails there if the name it
reads were ``Any`` (the old string map made every public name ``Any`` to mypy)."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import assert_type

import pytest

import rollout_policies
from rollout_policies import (
    DEFAULT_PLAN,
    Action,
    Colour,
    ComparisonProvider,
    Evidence,
    Gate,
    GitOps,
    GitRepo,
    LatencyComparison,
    Measurement,
    MetricProvider,
    Plan,
    PlanError,
    RateComparison,
    RolloutState,
    Stage,
    StageDecision,
    Trigger,
    UnknownStage,
    UserError,
    Verdict,
    advance,
    collect,
    collect_evidence,
    decide,
    evaluate_triggers,
    load_plan,
    provider_for,
    read_state,
    rollback_target,
)
from rollout_policies.core.progression import Transition
from rollout_policies.core.triggers import TriggerResult

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
HEAVY = ("numpy", "pydantic", "httpx", "ruamel", "kubernetes", "pulumi", "boto3", "psycopg")


def _type_checking_imports() -> dict[str, str]:
    """Public name -> module, as the ``TYPE_CHECKING`` block of ``rollout_policies/__init__`` imports it."""
    tree = ast.parse(Path(rollout_policies.__file__).read_text(encoding="utf-8"))
    blocks = [
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1, "one TYPE_CHECKING block"
    imports = [node for node in blocks[0].body if isinstance(node, ast.ImportFrom)]
    assert len(imports) == len(blocks[0].body), "the block holds only `from ... import ...`"
    return {alias.asname or alias.name: str(node.module) for node in imports for alias in node.names}


def test_all_names_exactly_the_imports_of_the_api() -> None:
    assert len(set(rollout_policies.__all__)) == len(rollout_policies.__all__) == 30
    assert sorted(rollout_policies.__all__) == sorted(_type_checking_imports())


def test_the_run_time_map_is_the_type_checking_imports() -> None:
    """``__getattr__`` imports from ``_MODULE_OF``; mypy reads the imports: the two say the same."""
    assert _type_checking_imports() == rollout_policies._MODULE_OF


@pytest.mark.parametrize("name", rollout_policies.__all__)
def test_this_file_imports_each_public_name_from_the_package(name: str) -> None:
    """The import at the top names every public name, so mypy checks each one here."""
    assert globals()[name] is getattr(rollout_policies, name)


@pytest.mark.parametrize("name", rollout_policies.__all__)
def test_each_name_is_the_object_of_the_module_it_is_imported_from(name: str) -> None:
    module = sys.modules[rollout_policies._MODULE_OF[name]]
    assert getattr(rollout_policies, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'demo'"):
        rollout_policies.demo  # noqa: B018 (the access is the test)


def test_import_alone_loads_nothing_heavy() -> None:
    probe = (
        "import sys, rollout_policies\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_names_are_typed_and_work_together(tmp_path: Path) -> None:
    """A walk through the API as a program would use it; mypy checks every type on the way."""
    plan = assert_type(load_plan(DEFAULT_PLAN), Plan)
    assert_type(DEFAULT_PLAN, Path)
    stage = assert_type(plan.stage("beta"), Stage)
    assert_type(stage.gates[0], Gate)
    assert_type(plan.triggers[0], Trigger)
    with pytest.raises(UnknownStage):
        plan.stage("gamma")
    assert issubclass(UnknownStage, PlanError) and issubclass(PlanError, UserError)

    evidence = Evidence.of([Measurement.ok("crash_rate", 0.1, NOW)])
    decision = assert_type(
        decide(plan, "beta", 0, evidence, now=NOW, stage_started_at=NOW, step_started_at=NOW),
        StageDecision,
    )
    assert_type(decision.action, Action)
    assert decision.action is Action.HOLD  # most of the beta's metrics have no data: never a promote
    assert isinstance(decision.gates[0].verdict, Verdict)
    assert_type(evaluate_triggers(plan, evidence, now=NOW), tuple[TriggerResult, ...])

    state = RolloutState.model_validate(
        {
            "stage": "beta",
            "step": 0,
            "stable": {"colour": "blue", "version": "1"},
            "candidate": {"colour": "green", "version": "2"},
            "weights": {"blue": 100, "green": 0},
            "stageStartedAt": NOW,
            "stepStartedAt": NOW,
        }
    )
    assert_type(advance(plan, state, Action.HOLD, NOW), Transition)
    assert assert_type(rollback_target(plan, state, NOW), RolloutState).weights[Colour.BLUE] == 100
    stack = tmp_path / "Pulumi.s.yaml"
    stack.write_text(
        "config:\n  markethub-rollout:rollout:\n"
        + "".join(f"    {line}\n" for line in _block(state).splitlines()),
        encoding="utf-8",
    )
    assert assert_type(read_state(stack), RolloutState) == state

    assert isinstance(assert_type(provider_for("manual"), MetricProvider), MetricProvider)
    assert RateComparison.__name__ == "RateComparison" and LatencyComparison.__name__ == "LatencyComparison"
    assert ComparisonProvider.__name__ == "ComparisonProvider"
    assert callable(collect) and callable(collect_evidence)
    assert GitOps.__name__ == "GitOps" and GitRepo.__name__ == "GitRepo"


def _block(state: RolloutState) -> str:
    import json

    return "\n".join(f"{key}: {json.dumps(value)}" for key, value in state.to_config().items())
