"""The rehearsal's pure parts: the plan at two time scales, fault specs, the shipped workflows read as
written, pull-request boxes, git/cluster agreement, the seed timeline and the detection budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devenv.rehearsal import analysis, wiring
from devenv.rehearsal.faults import DEFAULT_SPEC, parse_faults
from devenv.rehearsal.run import agreement_problems, check_boxes, load_signoffs
from devenv.rehearsal.scale import Scales, scale_plan_text, scale_sql
from infra.flags import flag_definitions, sticky_for
from infra.settings import StackSettings
from rollout_policies.errors import UserError
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan
from rollout_policies.state import RolloutState

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
REGIONS = ("us-east-1", "us-west-2")


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(DEFAULT_PLAN)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    path.write_text(scale_plan_text(DEFAULT_PLAN.read_text(), Scales(10080, 2)))
    return load_plan(path)


def test_calendar_durations_are_divided_by_the_scale(plan: Plan, scaled: Plan) -> None:
    for original, copy in zip(plan.stages, scaled.stages, strict=True):
        assert copy.min_duration == original.min_duration / 10080
        got = [s.bake.total_seconds() for s in copy.steps]
        assert got == pytest.approx([s.bake.total_seconds() / 10080 for s in original.steps], abs=1e-3)
    window = next(c for c in scaled.stage("limited").go if c.window)
    assert window.window is not None
    assert window.window.total_seconds() == pytest.approx(48 * 3600 / 10080, abs=1e-3)


def test_fault_responses_are_divided_by_the_response_scale_only(plan: Plan, scaled: Plan) -> None:
    assert [t.window for t in scaled.triggers] == [t.window / 2 for t in plan.triggers]
    assert scaled.stage("majority").rollback_objective == plan.stage("majority").rollback_objective / 2
    assert "window=150s" in (scaled.metric("crash_rate").source.query or "")


def test_thresholds_and_gates_are_untouched(plan: Plan, scaled: Plan) -> None:
    for original, copy in zip(plan.stages, scaled.stages, strict=True):
        assert [(g.metric, g.target, g.alert) for g in copy.gates] == [
            (g.metric, g.target, g.alert) for g in original.gates
        ]


def test_comparisons_are_off_unless_asked_for(plan: Plan, tmp_path: Path) -> None:
    text = scale_plan_text(DEFAULT_PLAN.read_text(), Scales(10080, 2, comparisons=True))
    (tmp_path / "p.yaml").write_text(text)
    kept = load_plan(tmp_path / "p.yaml")
    assert any(g.comparison for s in kept.stages for g in s.gates)
    assert "comparison gates judged by thresholds only" not in text


def test_sql_windows_and_elapsed_times_scale_together() -> None:
    query = (
        "SELECT avg(extract(epoch FROM ended_at - started_at)) FROM s WHERE t > %(now)s - interval '7 days'"
    )
    scaled = scale_sql(query, 10080)
    assert "interval '60 seconds'" in scaled
    assert "(extract(epoch FROM ended_at - started_at) * 10080)" in scaled


def test_cohort_retention_reads_a_cohort_old_enough(plan: Plan) -> None:
    for metric_id, days in (
        ("retention_1d", "1 day"),
        ("retention_7d", "7 days"),
        ("retention_30d", "30 days"),
    ):
        metric = plan.metric(metric_id)
        assert metric.evaluable_after == timedelta(0)
        assert f"cohort_started_at <= %(now)s - interval '{days}'" in (metric.source.query or "")


def test_scales_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="calendar scale"):
        Scales(0.5)


def test_default_faults_parse_and_name_their_response(plan: Plan) -> None:
    faults = parse_faults(DEFAULT_SPEC, plan, REGIONS)
    assert [f.stage for f in faults][:2] == ["beta", "limited"]
    assert all(f.response == "rollback" for f in faults)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("beta:api-errors", "write STAGE"),
        ("gamma+5%:api-errors", "no stage 'gamma'"),
        ("beta+5%:meteor", "unknown fault 'meteor'"),
        ("limited@7+5%:api-errors", "steps 0..2"),
        ("beta+5%:api-errors:eu-west-1", "no region"),
    ],
)
def test_bad_fault_specs_name_the_item(plan: Plan, spec: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_faults(spec, plan, REGIONS)


def test_a_region_outage_defaults_to_the_secondary_region(plan: Plan) -> None:
    (fault,) = parse_faults("majority+30%:region-outage", plan, REGIONS)
    assert fault.region == "us-west-2" and fault.response == "failover"


def test_the_promote_step_is_read_from_the_shipped_workflow() -> None:
    steps = wiring.run_steps(WORKFLOWS / "rollout-promote.yml")
    promote = [s for s in steps if "rollout promote" in s.run]
    assert len(promote) == 1
    assert "GITHUB_TOKEN" in promote[0].env
    assert wiring.cron_interval_seconds(WORKFLOWS / "rollout-promote.yml") == 1800


def test_an_unmapped_secret_is_an_error_naming_the_workflow() -> None:
    steps = wiring.run_steps(WORKFLOWS / "rollout-up.yml")
    up = next(s for s in steps if "PULUMI_BACKEND_URL" in s.env)
    with pytest.raises(wiring.WiringError, match=r"rollout-up\.yml.*PULUMI_BACKEND_URL"):
        for value in up.env.values():
            wiring.Context(secrets={}, github={"event.before": "a", "sha": "b"}).substitute(value, up.where)


def test_a_step_runs_with_its_resolved_environment(tmp_path: Path) -> None:
    step = wiring.WorkflowStep(
        tmp_path / "w.yml", "job", "echo", 'echo "$A/$B"', {"A": "${{ secrets.X }}", "B": "lit"}
    )
    done = wiring.run_step(
        step, wiring.Context(secrets={"X": "one"}), cwd=tmp_path, runner_env={"PATH": "/usr/bin:/bin"}
    )
    assert (done.returncode, done.stdout.strip()) == (0, "one/lit")


def test_signed_off_boxes_are_checked_and_others_left(plan: Plan) -> None:
    signoffs = load_signoffs(None, plan)
    body = "- [ ] Positive feedback on core features (DevOps lead)\n- [ ] Something else\n"
    ticked, count = check_boxes(body, signoffs)
    assert count == 1
    assert ticked.splitlines() == [
        "- [x] Positive feedback on core features (DevOps lead)",
        "- [ ] Something else",
    ]


def test_a_signoff_file_naming_no_manual_criterion_is_refused(plan: Plan, tmp_path: Path) -> None:
    path = tmp_path / "signoffs.yaml"
    path.write_text("signoffs: [beta-nps]\n")
    with pytest.raises(UserError, match="beta-nps"):
        load_signoffs(path, plan)


def _state(stage: str, green: int, started: datetime | None = None) -> RolloutState:
    moment = started or datetime(2026, 12, 1, tzinfo=UTC)
    return RolloutState.model_validate(
        {
            "stage": stage,
            "step": 0,
            "stable": {"colour": "blue", "version": "1"},
            "candidate": {"colour": "green", "version": "2"},
            "weights": {"blue": 100 - green, "green": green},
            "stageStartedAt": moment,
            "stepStartedAt": moment,
        }
    )


def limited_flags(plan: Plan, weight: int) -> dict[str, object]:
    """What infra/program.py serves in the limited stage at this weight: its features split by user."""
    stage = plan.stage("limited")
    cohort = StackSettings.model_fields["cohort_value"].default
    return flag_definitions(stage.features, sticky_for(plan, stage, weight, rolled_back=False, cohort=cohort))


def test_agreement_holds_when_weights_cohort_and_flags_match(plan: Plan) -> None:
    live = {
        "weights": {"blue": 98, "green": 2},
        "cohort_rule": True,
        "flags": limited_flags(plan, 2),
    }
    assert agreement_problems(plan, _state("limited", 2), live) == []
    # the flags split at another weight are not this step's
    live = {**live, "flags": limited_flags(plan, 5)}
    assert agreement_problems(plan, _state("limited", 2), live) == [
        "flags: live flags are not stage limited's"
    ]


@pytest.mark.parametrize(
    ("live", "problem"),
    [
        ({"weights": {"blue": 100, "green": 0}, "cohort_rule": False}, "weights"),
        ({"weights": {"blue": 98, "green": 2}, "cohort_rule": False}, "cohort rule"),
    ],
)
def test_disagreement_names_what_differs(plan: Plan, live: dict[str, object], problem: str) -> None:
    live = {**live, "flags": limited_flags(plan, 2)}
    assert agreement_problems(plan, _state("limited", 2), live)[0].startswith(problem)


def test_a_rolled_back_stack_must_have_no_cohort_rule_live(plan: Plan) -> None:
    live = {
        "weights": {"blue": 100, "green": 0},
        "cohort_rule": True,
        "flags": limited_flags(plan, 2),
    }
    assert agreement_problems(plan, _state("limited", 0), live)[0].startswith("cohort rule")


def test_beta_needs_the_cohort_rule_live(plan: Plan) -> None:
    live = {
        "weights": {"blue": 100, "green": 0},
        "cohort_rule": False,
        "flags": flag_definitions(plan.stage("beta").features),
    }
    assert agreement_problems(plan, _state("beta", 0), live)[0].startswith("cohort rule")


def test_the_timeline_holds_when_each_stage_starts_in_its_seed_weeks(plan: Plan) -> None:
    start, scale = datetime(2026, 12, 1, tzinfo=UTC), 10080.0
    at = {"beta": 0, "limited": 14.2, "medium": 28.3, "majority": 42.5, "full": 56.6}
    history = [
        (f"c{i}", _state(stage, 0, start + timedelta(days=day) / scale))
        for i, (stage, day) in enumerate(at.items())
    ]
    rows = analysis.timeline(plan, "s", history, start, scale, interval_hours=11.2)
    assert [r["stage"] for r in rows] == list(at)
    assert all(r["ok"] for r in rows), rows


def test_a_stage_promoted_after_its_seed_weeks_fails_the_timeline(plan: Plan) -> None:
    start, scale = datetime(2026, 12, 1, tzinfo=UTC), 10080.0
    history = [
        ("a", _state("beta", 0, start)),
        ("b", _state("limited", 2, start + timedelta(days=29) / scale)),
    ]
    rows = analysis.timeline(plan, "s", history, start, scale, interval_hours=11.2)
    assert rows[1]["in_seed_weeks"] is False and rows[1]["ok"] is False


def test_a_budget_that_the_measured_apply_overruns_is_a_failure(plan: Plan) -> None:
    fault = {"trigger": "api-error-rate", "detected_at": 10.0, "responded_at": 11.0, "stable_at": 20.0}
    (row,) = analysis.budgets(plan, [fault], "35s")
    assert row["margin"] == pytest.approx(35 - (30 + 30 + 1 + 9))
    assert row["ok"] is False
    (fine,) = analysis.budgets(plan, [fault], "90s")
    assert fine["ok"] is True


def test_a_job_step_sees_what_earlier_steps_wrote_to_github_env_and_github_path(tmp_path: Path) -> None:
    """As on GitHub's runner: RUNNER_TEMP and the two files exist, `NAME=value` lines become
    variables of the later steps, and added folders go in front of PATH (after the pulumi shim)."""
    base = {"PATH": "/shim:/usr/bin", "KEEP": "1"}
    first = wiring.with_job_files(base, tmp_path / "runner")
    assert first["RUNNER_TEMP"] == str(tmp_path / "runner") and first["PATH"] == "/shim:/usr/bin"
    Path(first["GITHUB_ENV"]).write_text(f"KUBECONFIG={first['RUNNER_TEMP']}/kube/config\n")
    Path(first["GITHUB_PATH"]).write_text("/tools/bin\n")

    second = wiring.with_job_files(base, tmp_path / "runner")

    assert second["KUBECONFIG"] == f"{tmp_path / 'runner'}/kube/config"
    assert second["PATH"] == "/shim:/tools/bin:/usr/bin"
    assert second["KEEP"] == "1"


def test_a_rehearsed_stack_gets_its_controller_as_a_team_configures_one(tmp_path: Path) -> None:
    """The shipped local stack, turned on the rehearsal's way: a valid config whose controller commits
    to the rehearsal's remote and whose alerts go to the controller's own Service."""
    from devenv.rehearsal.run import ROOT, _controller_on
    from infra.settings import settings_from_stack_file

    path = tmp_path / "Pulumi.local-us-east-1.yaml"
    path.write_text((ROOT / path.name).read_text())
    block = (
        "  markethub-rollout:controller:\n"
        f"    repository: {(tmp_path / 'remote.git').as_uri()}\n"
        "    image: ghcr.io/markethub/markethub-rollout:rehearsal\n"
        "    providers:\n"
        "      jsonBaseUrls: {crash_reporter: 'http://127.0.0.1:9/crash'}\n"
    )
    _controller_on(path, block)
    settings = settings_from_stack_file(path)
    assert settings.controller.enabled and settings.controller.repository.endswith("remote.git")
    assert settings.alerts.webhook_url == ""
    assert settings.create_namespace is False
    with pytest.raises(UserError, match="to turn the controller on"):
        _controller_on(path, block)  # already on: the local stack's block is gone
