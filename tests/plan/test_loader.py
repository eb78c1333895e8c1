"""The plan loader: each kind of malformed plan gives one exact line, ``file:line: field.path: problem``."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from rollout_policies.errors import UserError
from rollout_policies.plan.loader import DEFAULT_PLAN, PlanError, load_plan
from rollout_policies.plan.model import Op

REPO = Path(__file__).resolve().parents[2]

# A small valid plan; each test changes one thing. Line numbers in the expected messages refer to
# this text (line 1 is "name: ...").
VALID = """\
name: tiny
service: shop
decision_authority: [DevOps lead, CTO]
metrics:
  - id: crash_rate
    name: Crashes
    unit: "%"
    direction: lower
    source: {provider: prometheus, query: crash_rate}
  - id: nps
    name: NPS
    unit: score
    direction: higher
    source: {provider: json_http, query: score}
  - id: dau
    name: Daily Active Users
    source: {provider: sql, query: SELECT 1}
tables:
  - name: Technical
    gates:
      - {metric: crash_rate, target: "< 1", alert: "> 2"}
      - {metric: nps, target: "> 7", alert: "< 5"}
      - {metric: dau, monitor_only: true, note: Growth trend}
stages:
  - id: beta
    name: Beta
    audience: {kind: cohort, size: 50, platform_split: {ios: 60, android: 40}}
    steps:
      - {weight: 0, bake: 1d}
    min_duration: 2w
    rollback_objective: 30m
    tables: [Technical]
    go:
      - {id: beta-ok, text: All fine, kind: metrics, tables: [Technical]}
      - {id: beta-feedback, text: Positive feedback, kind: manual, owners: [CTO]}
  - id: limited
    name: Limited
    audience: {kind: percentage, size: 1000}
    steps:
      - {weight: 2, bake: 2d}
      - {weight: 5, bake: 2d}
      - {weight: 100}
    min_duration: 2w
    rollback_objective: 30m
    tables: [Technical]
triggers:
  - {id: crash, text: Crash Rate > 5%, metric: crash_rate, threshold: "> 5", window: 5m}
objectives:
  backups:
    - {kind: incremental, every: 1h, retention: 7d}
  disaster_recovery: {regions: [us-east-1, us-west-2], primary: us-east-1, rto: 30m, rpo: 1h, drill_every: 7d}
"""


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def changed(old: str, new: str) -> str:
    assert VALID.count(old) == 1, old
    return VALID.replace(old, new)


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(path), "plan.yaml")


def test_valid_plan_loads(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, VALID))
    assert [stage.id for stage in plan.stages] == ["beta", "limited"]
    assert [gate.metric for gate in plan.stage("limited").gates] == ["crash_rate", "nps", "dau"]
    assert plan.stage("beta").gates[0].target is not None
    assert plan.stage("beta").gates[0].target.op is Op.LT


def test_shipped_plan_loads() -> None:
    plan = load_plan(DEFAULT_PLAN)
    assert [stage.id for stage in plan.stages] == ["beta", "limited", "medium", "majority", "full"]


def test_plan_error_is_a_user_error() -> None:
    assert issubclass(PlanError, UserError)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert str(caught.value) == f"{path}: no such plan file"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(tmp_path)
    assert str(caught.value) == f"{tmp_path}: is a directory, not a plan file"


def test_empty_file(tmp_path: Path) -> None:
    assert error_of(tmp_path, "") == "plan.yaml: the plan file is empty"


def test_comments_only_file_is_empty(tmp_path: Path) -> None:
    assert error_of(tmp_path, "# nothing yet\n\n") == "plan.yaml: the plan file is empty"


def test_not_a_mapping(tmp_path: Path) -> None:
    assert error_of(tmp_path, "- beta\n- limited\n") == (
        "plan.yaml:1: plan: expected a mapping of plan fields, got a list"
    )


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = changed("    name: Limited\n", "    name: [Limited\n")
    assert error_of(tmp_path, text) == "plan.yaml:38: YAML syntax error: expected ',' or ']', but got ':'"


def test_duplicate_key(tmp_path: Path) -> None:
    text = changed("    name: Limited\n", "    name: Limited\n    name: Again\n")
    assert error_of(tmp_path, text) == "plan.yaml:38: name: duplicate key"


def test_wrong_type(tmp_path: Path) -> None:
    text = changed("{kind: percentage, size: 1000}", "{kind: percentage, size: lots}")
    assert error_of(tmp_path, text) == (
        "plan.yaml:38: stages[1].audience.size: Input should be a valid integer, "
        "unable to parse string as an integer"
    )


def test_bad_duration(tmp_path: Path) -> None:
    text = changed(
        "    min_duration: 2w\n    rollback_objective: 30m\n    tables: [Technical]\ntriggers",
        "    min_duration: two weeks\n    rollback_objective: 30m\n    tables: [Technical]\ntriggers",
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:43: stages[1].min_duration: not a duration: 'two weeks' "
        "(use a number with s, m, h, d or w, such as 48h)"
    )


def test_bad_threshold(tmp_path: Path) -> None:
    text = changed('target: "> 7"', 'target: "about 7"')
    assert error_of(tmp_path, text) == (
        "plan.yaml:22: tables[0].gates[1].target: not a threshold: 'about 7' "
        "(write it as an operator and a number, such as '< 1')"
    )


def test_missing_field(tmp_path: Path) -> None:
    text = changed(
        "    rollback_objective: 30m\n    tables: [Technical]\n    go:", "    tables: [Technical]\n    go:"
    )
    assert error_of(tmp_path, text) == "plan.yaml:25: stages[0].rollback_objective: required field is missing"


def test_unknown_field(tmp_path: Path) -> None:
    text = changed(
        "    min_duration: 2w\n    rollback_objective: 30m\n    tables: [Technical]\n    go:",
        "    min_duration: 2w\n    bake_time: 2w\n"
        "    rollback_objective: 30m\n    tables: [Technical]\n    go:",
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:31: stages[0].bake_time: unknown field (misspelt, or not part of the plan format)"
    )


def test_unknown_metric_in_gate(tmp_path: Path) -> None:
    text = changed("{metric: nps, target", "{metric: net_promoter, target")
    assert error_of(tmp_path, text) == (
        "plan.yaml:22: tables[0].gates[1].metric: unknown metric 'net_promoter' (not defined under metrics)"
    )


def test_unknown_metric_in_trigger(tmp_path: Path) -> None:
    text = changed("metric: crash_rate, threshold", "metric: crashes, threshold")
    assert error_of(tmp_path, text) == (
        "plan.yaml:47: triggers[0].metric: unknown metric 'crashes' (not defined under metrics)"
    )


def test_unknown_metric_in_criterion(tmp_path: Path) -> None:
    text = changed(
        "      - {id: beta-feedback, text: Positive feedback, kind: manual, owners: [CTO]}\n",
        "      - {id: beta-feedback, text: Positive feedback, kind: manual, owners: [CTO]}\n"
        '      - {id: beta-bugs, text: <5 critical bugs, kind: count, metric: bugs, threshold: "< 5"}\n',
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:36: stages[0].go[2].metric: unknown metric 'bugs' (not defined under metrics)"
    )


def test_unknown_provider(tmp_path: Path) -> None:
    text = changed("{provider: json_http, query: score}", "{provider: graphite, query: score}")
    assert error_of(tmp_path, text) == (
        "plan.yaml:14: metrics[1].source.provider: unknown provider 'graphite' "
        "(known: cloudwatch, json_http, manual, metrics_file, prometheus, sql)"
    )


def test_provider_names_come_from_the_caller(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(PlanError, match=r"unknown provider 'prometheus' \(known: json_http, sql\)"):
        load_plan(path, providers=("json_http", "sql"))


def test_target_wrong_way_round_for_lower_is_better(tmp_path: Path) -> None:
    text = changed(
        '{metric: crash_rate, target: "< 1", alert: "> 2"}',
        '{metric: crash_rate, target: "> 1", alert: "> 2"}',
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:21: tables[0].gates[0].target: '> 1' is the wrong way round: lower is better, "
        "so a target uses < or <="
    )


def test_alert_wrong_way_round_for_higher_is_better(tmp_path: Path) -> None:
    text = changed('target: "> 7", alert: "< 5"', 'target: "> 7", alert: "> 5"')
    assert error_of(tmp_path, text) == (
        "plan.yaml:22: tables[0].gates[1].alert: '> 5' is the wrong way round: higher is better, "
        "so an alert uses < or <="
    )


def test_alert_on_the_good_side_of_the_target(tmp_path: Path) -> None:
    text = changed(
        '{metric: crash_rate, target: "< 1", alert: "> 2"}',
        '{metric: crash_rate, target: "< 3", alert: "> 2"}',
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:21: tables[0].gates[0].alert: '> 2' must sit at or above the target '< 3' "
        "(lower is better)"
    )


def test_trigger_on_the_good_side(tmp_path: Path) -> None:
    text = changed('threshold: "> 5", window: 5m', 'threshold: "< 5", window: 5m')
    assert error_of(tmp_path, text) == (
        "plan.yaml:47: triggers[0].threshold: '< 5' fires when 'crash_rate' is good (lower is better); "
        "a rollback trigger fires on the bad side"
    )


def test_gate_on_metric_without_direction(tmp_path: Path) -> None:
    text = changed("{metric: dau, monitor_only: true, note: Growth trend}", '{metric: dau, target: "> 10"}')
    assert error_of(tmp_path, text) == (
        "plan.yaml:23: tables[0].gates[2].metric: metric 'dau' has no direction, "
        "so it can only be used by monitor-only gates"
    )


def test_duplicate_stage(tmp_path: Path) -> None:
    text = changed("  - id: limited\n", "  - id: beta\n")
    assert error_of(tmp_path, text) == "plan.yaml:36: stages[1].id: duplicate stage id 'beta'"


def test_duplicate_metric(tmp_path: Path) -> None:
    text = changed("  - id: nps\n", "  - id: crash_rate\n")
    assert (
        error_of(tmp_path, text)
        == "plan.yaml:10: metrics[1].id: duplicate metric id 'crash_rate' (and 1 more)"
    )


def test_duplicate_table(tmp_path: Path) -> None:
    text = changed(
        "stages:\n",
        "  - name: Technical\n    gates: []\nstages:\n",
    )
    assert error_of(tmp_path, text) == "plan.yaml:24: tables[1].name: duplicate table name 'Technical'"


def test_unknown_table_in_stage(tmp_path: Path) -> None:
    text = changed(
        "    rollback_objective: 30m\n    tables: [Technical]\ntriggers",
        "    rollback_objective: 30m\n    tables: [Technical, Business]\ntriggers",
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:45: stages[1].tables[1]: unknown table 'Business' (tables: Technical)"
    )


def test_steps_must_increase(tmp_path: Path) -> None:
    text = changed("      - {weight: 5, bake: 2d}\n", "      - {weight: 2, bake: 2d}\n")
    assert error_of(tmp_path, text) == (
        "plan.yaml:41: stages[1].steps[1].weight: traffic weights must increase: "
        "2 is not above the previous step (2)"
    )


def test_steps_must_increase_across_stages(tmp_path: Path) -> None:
    text = changed("      - {weight: 0, bake: 1d}\n", "      - {weight: 3, bake: 1d}\n")
    assert error_of(tmp_path, text) == (
        "plan.yaml:40: stages[1].steps[0].weight: traffic weights must increase: "
        "2 is not above the previous stage's last step (3)"
    )


def test_weight_out_of_range(tmp_path: Path) -> None:
    text = changed("      - {weight: 100}\n", "      - {weight: 110}\n")
    assert error_of(tmp_path, text) == (
        "plan.yaml:42: stages[1].steps[2].weight: Input should be less than or equal to 100"
    )


def test_platform_split_must_add_up(tmp_path: Path) -> None:
    text = changed("{ios: 60, android: 40}", "{ios: 60, android: 50}")
    assert error_of(tmp_path, text) == (
        "plan.yaml:27: stages[0].audience.platform_split: ios and android must add up to 100, not 110"
    )


def test_manual_owner_outside_decision_authority(tmp_path: Path) -> None:
    text = changed("owners: [CTO]", "owners: [Intern]")
    assert error_of(tmp_path, text) == (
        "plan.yaml:35: stages[0].go[1].owners[0]: owner 'Intern' is not in decision_authority "
        "(CTO, DevOps lead)"
    )


def test_metrics_criterion_names_a_table_the_stage_lacks(tmp_path: Path) -> None:
    text = changed("kind: metrics, tables: [Technical]}", "kind: metrics, tables: [Business]}")
    assert error_of(tmp_path, text) == (
        "plan.yaml:34: stages[0].go[0].tables[0]: table 'Business' is not one of this stage's tables"
    )


def test_primary_region_must_be_listed(tmp_path: Path) -> None:
    text = changed("primary: us-east-1", "primary: eu-west-1")
    assert error_of(tmp_path, text) == (
        "plan.yaml:51: objectives.disaster_recovery.primary: primary region 'eu-west-1' is not one of the "
        "regions (us-east-1, us-west-2)"
    )


def test_several_problems_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    text = changed("  - id: limited\n", "  - id: beta\n").replace(
        "{provider: json_http", "{provider: graphite"
    )
    message = error_of(tmp_path, text)
    assert message.startswith("plan.yaml:14: metrics[1].source.provider: unknown provider 'graphite'")
    assert message.endswith("(and 1 more)")


def test_steps_longer_than_the_stage(tmp_path: Path) -> None:
    text = changed("      - {weight: 2, bake: 2d}\n", "      - {weight: 2, bake: 20d}\n")
    assert error_of(tmp_path, text) == (
        "plan.yaml:39: stages[1].steps: the steps before the last bake longer than the stage's min_duration"
    )


def test_deciding_gate_needs_a_target(tmp_path: Path) -> None:
    text = changed('{metric: nps, target: "> 7", alert: "< 5"}', "{metric: nps, note: looks fine}")
    assert error_of(tmp_path, text) == (
        "plan.yaml:22: tables[0].gates[1]: a gate needs a target (or monitor_only: true, "
        "or a metric a person judges with provider manual)"
    )


def test_manual_metric_gate_may_have_only_a_note(tmp_path: Path) -> None:
    text = changed("{provider: json_http, query: score}", "{provider: manual}").replace(
        '{metric: nps, target: "> 7", alert: "< 5"}', "{metric: nps, note: Maintain or grow position}"
    )
    plan = load_plan(write(tmp_path, text))
    assert plan.stage("beta").gates[1].target is None


def test_window_criterion_needs_a_window(tmp_path: Path) -> None:
    text = changed(
        "kind: manual, owners: [CTO]}\n",
        "kind: manual, owners: [CTO]}\n"
        '      - {id: beta-quiet, text: Quiet, kind: window, metric: crash_rate, threshold: "< 1"}\n',
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:36: stages[0].go[2]: a window criterion needs a window longer than zero (such as 48h)"
    )


def test_duplicate_criterion_id(tmp_path: Path) -> None:
    text = changed("{id: beta-feedback,", "{id: beta-ok,")
    assert error_of(tmp_path, text) == "plan.yaml:35: stages[0].go[1].id: duplicate criterion id 'beta-ok'"


def test_duplicate_trigger_id(tmp_path: Path) -> None:
    line = '  - {id: crash, text: Crash Rate > 5%, metric: crash_rate, threshold: "> 5", window: 5m}\n'
    text = changed(line, line + line)
    assert error_of(tmp_path, text) == "plan.yaml:48: triggers[1].id: duplicate trigger id 'crash'"


def test_every_stage_names_the_same_features(tmp_path: Path) -> None:
    text = changed(
        "    tables: [Technical]\n    go:",
        "    features: {social_sharing: {state: limited}}\n    tables: [Technical]\n    go:",
    ).replace(
        "    audience: {kind: percentage, size: 1000}\n",
        "    audience: {kind: percentage, size: 1000}\n    features: {offline_mode: {state: enabled}}\n",
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:32: stages[0].features: lists no state for offline_mode (every stage names the same "
        "features) (and 1 more)"
    )


def test_a_stable_feature_no_stage_names_is_refused(tmp_path: Path) -> None:
    text = VALID + "stable_features: {carts: {state: enabled}}\n"
    assert error_of(tmp_path, text) == (
        "plan.yaml:52: stable_features.carts: 'carts' is not a feature any stage names (none)"
    )


# --- the command line -------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_cli_validate_bad_plan_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path, changed("  - id: limited\n", "  - id: beta\n"), name="bad.yaml")
    result = run_cli("plan", "validate", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"rollout: error: {bad}:36: stages[1].id: duplicate stage id 'beta'"
    ]


def test_cli_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("plan", "validate", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"rollout: error: {tmp_path / 'missing.yaml'}: no such plan file"]
    assert "Traceback" not in result.stderr


def test_cli_show_bad_plan_exits_2(tmp_path: Path) -> None:
    bad = write(tmp_path, "stages: [\n", name="bad.yaml")
    result = run_cli("plan", "show", "--json", str(bad))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"rollout: error: {bad}:2: YAML syntax error: ")


def test_cli_validate_shipped_plan(tmp_path: Path) -> None:
    result = run_cli("plan", "validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{DEFAULT_PLAN}: OK: plan 'markethub-mobile progressive rollout': 5 stages "
        "(beta -> limited -> medium -> majority -> full), 61 metrics, "
        "160 gates (120 gating, 40 monitor-only), "
        "21 go/no-go criteria, 4 rollback triggers"
    ]


# --- comparison gates -----------------------------------------------------------------------------

_CRASH_GATE = '{metric: crash_rate, target: "< 1", alert: "> 2"}'


def with_comparison(comparison: str, gate: str = _CRASH_GATE) -> str:
    return changed(gate, gate[:-1] + f", comparison: {comparison}}}")


def test_comparison_loads(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, with_comparison("{kind: latency, alpha: 0.05, tolerance: 2}")))
    comparison = plan.stage("limited").gates[0].comparison
    assert comparison is not None
    assert (comparison.kind.value, comparison.alpha, comparison.tolerance, comparison.latency_quantile) == (
        "latency",
        0.05,
        2.0,
        0.95,
    )


@pytest.mark.parametrize(
    ("comparison", "message"),
    [
        ("{kind: rate, alpha: 0.5}", "comparison.alpha: alpha must be above 0 and below 0.5, got 0.5"),
        ("{kind: rate, alpha: 0}", "comparison.alpha: alpha must be above 0 and below 0.5, got 0"),
        ("{kind: rate, tolerance: 1}", "comparison: tolerance must be above 1 + margin (1), got 1"),
        (
            "{kind: rate, margin: 0.5, tolerance: 1.4}",
            "comparison: tolerance must be above 1 + margin (1.5), got 1.4",
        ),
        (
            "{kind: rate, margin: -0.1}",
            "comparison.margin: margin must be at least 0 (and below 10), got -0.1",
        ),
        ("{kind: latency, quantile: 1}", "comparison.quantile: quantile must be above 0 and below 1, got 1"),
        (
            "{kind: rate, quantile: 0.9}",
            "comparison: quantile is for latency comparisons; a rate comparison has none",
        ),
        (
            "{kind: rate, dispersion: 0.5}",
            "comparison.dispersion: dispersion must be at least 1 (or left out to estimate it), got 0.5",
        ),
        ("{kind: median}", "comparison.kind: Input should be 'rate' or 'latency'"),
        ("{alpha: 0.01}", "comparison.kind: required field is missing"),
        (
            "{kind: rate, window: 5m}",
            "comparison.window: unknown field (misspelt, or not part of the plan format)",
        ),
    ],
)
def test_bad_comparison_settings(tmp_path: Path, comparison: str, message: str) -> None:
    assert error_of(tmp_path, with_comparison(comparison)) == f"plan.yaml:21: tables[0].gates[0].{message}"


def test_comparison_on_a_higher_is_better_metric(tmp_path: Path) -> None:
    text = with_comparison("{kind: rate}", '{metric: nps, target: "> 7", alert: "< 5"}')
    assert error_of(tmp_path, text) == (
        "plan.yaml:22: tables[0].gates[1].comparison: metric 'nps' is not lower-is-better; a comparison "
        "counts bad events or slow requests, so it needs direction: lower"
    )


def test_comparison_on_a_monitor_only_gate(tmp_path: Path) -> None:
    text = changed(
        "{metric: dau, monitor_only: true, note: Growth trend}",
        "{metric: crash_rate, monitor_only: true, note: Growth trend, comparison: {kind: rate}}",
    )
    assert error_of(tmp_path, text) == (
        "plan.yaml:23: tables[0].gates[2].comparison: a monitor-only gate never decides, "
        "so it cannot have a comparison"
    )


def test_a_comparison_alone_makes_a_gate(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, changed(_CRASH_GATE, "{metric: crash_rate, comparison: {kind: rate}}")))
    gate = plan.stage("beta").gates[0]
    assert (gate.target, gate.alert, gate.comparison is not None) == (None, None, True)


def test_shipped_plan_compares_where_it_matters() -> None:
    plan = load_plan(DEFAULT_PLAN)
    compared = {
        (gate.metric, gate.comparison.kind.value)
        for stage in plan.stages
        for gate in stage.gates
        if gate.comparison is not None
    }
    assert compared == {("crash_rate", "rate"), ("api_error_rate", "rate"), ("api_response_time", "latency")}


def _shipped(tmp_path: Path, *replacements: tuple[str, str]) -> str:
    """The shipped plan with some text replaced, loaded; the one-line error (path shortened)."""
    text = DEFAULT_PLAN.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return error_of(tmp_path, text)


def test_a_stage_that_keeps_segments_from_the_candidate_needs_a_like_for_like_comparison(
    tmp_path: Path,
) -> None:
    """The medium stage excludes VIPs from the candidate: without a segment label the baseline
    would still hold VIPs, so the plan is rejected at the stage's exclude_segments line."""
    message = _shipped(
        tmp_path,
        ("          segment_label: segment\n", ""),
        ("by (track, segment)", "by (track)"),
        ("by (track, segment, le)", "by (track, le)"),
    )
    text = DEFAULT_PLAN.read_text(encoding="utf-8")
    line = text.splitlines().index("      exclude_segments: [vip]") + 1
    line -= 3 * 1  # three segment_label lines above it were removed
    assert message == (
        f"plan.yaml:{line}: stages[2].audience.exclude_segments: the candidate does not serve vip, so the "
        "comparison of 'crash_rate' (table 'Technical Metrics') cannot be like-for-like: give it "
        "segment_label and group its queries by that label"
    )


def test_a_segment_label_the_queries_do_not_group_by_is_rejected(tmp_path: Path) -> None:
    message = _shipped(
        tmp_path,
        (
            "by (track, segment) (increase(markethub_crashes_total",
            "by (track) (increase(markethub_crashes_total",
        ),
    )
    assert "tables[1].gates[0].comparison: events must group by segment_label 'segment'" in message


@pytest.mark.parametrize(
    ("scrape", "problem"),
    [
        (
            "1m",
            "events: range [75s] holds fewer than two scrapes at scrape_interval 1m",
        ),
        (
            "5s",
            "events: range [75s] is longer than interval 1m plus one scrape (5s)",
        ),
    ],
)
def test_comparison_ranges_must_fit_the_scrape_interval(tmp_path: Path, scrape: str, problem: str) -> None:
    """A 1m scrape leaves one sample in a 75 s range (increase() reads nothing); a 5 s scrape makes
    the 75 s ranges of 1-minute intervals overlap."""
    message = _shipped(tmp_path, ("scrape_interval: 15s", f"scrape_interval: {scrape}"))
    assert f"tables[1].gates[0].comparison: {problem}" in message


def test_shipped_comparisons_read_every_event_once() -> None:
    """[75s] at 15 s scrapes and 1-minute intervals: each window's samples span the minute since the
    previous window's last scrape, so increase() reads 75/60 of the true count and nothing is lost."""
    plan = load_plan(DEFAULT_PLAN)
    settings = [g.comparison for s in plan.stages for g in s.gates if g.comparison is not None]
    assert {(c.window, c.scrape_interval, c.interval, c.count_scale) for c in settings} == {
        (timedelta(seconds=75), timedelta(seconds=15), timedelta(minutes=1), 1.25)
    }


FEEDBACK = "      - {id: beta-feedback, text: Positive feedback, kind: manual, owners: [CTO]}\n"


def test_a_drill_criterion_loads_with_its_drill_and_window(tmp_path: Path) -> None:
    drill = (
        "      - {id: beta-drill, text: Failover testing, kind: drill, drill: region-failover, window: 7d}\n"
    )
    path = tmp_path / "plan.yaml"
    path.write_text(changed(FEEDBACK, FEEDBACK + drill))
    criterion = load_plan(path).stage("beta").go[-1]
    assert (criterion.kind.value, criterion.drill, criterion.window) == (
        "drill",
        "region-failover",
        timedelta(days=7),
    )


def test_a_drill_criterion_names_a_known_drill(tmp_path: Path) -> None:
    drill = "      - {id: beta-drill, text: Failover testing, kind: drill, drill: chaos-monkey, window: 7d}\n"
    assert error_of(tmp_path, changed(FEEDBACK, FEEDBACK + drill)) == (
        "plan.yaml:36: stages[0].go[2].drill: a drill criterion names one of the drills "
        "(region-failover, backup-restore), got 'chaos-monkey'"
    )


def test_a_drill_criterion_needs_a_window(tmp_path: Path) -> None:
    drill = "      - {id: beta-drill, text: Failover testing, kind: drill, drill: region-failover}\n"
    assert error_of(tmp_path, changed(FEEDBACK, FEEDBACK + drill)) == (
        "plan.yaml:36: stages[0].go[2]: a drill criterion needs a window: how recent the passed drill "
        "must be (such as 14d)"
    )
