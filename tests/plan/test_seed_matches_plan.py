"""The shipped plan encodes the customer's seed plan: every table row, number, operator and unit.

The seed markdown is parsed here (the ``` blocks under each #### heading and bold "N-Day Metrics"
label, the bullet lists, the overview diagram) and compared with the loaded plan. ``seed_mismatches``
returns every difference; the last test mutates numbers in the plan and checks each is caught.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from rollout_policies.plan.loader import DEFAULT_PLAN, build_plan, load_plan
from rollout_policies.plan.model import CriterionKind, Direction, FeatureState, Metric, Op, Plan, Threshold

# A verbatim copy, so the test runs from the repository alone; test_seed_copy_is_current checks it.
SEED = Path(__file__).parent / "seed" / "progressive-rollout-plan.md"
SHARED_SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "progressive-rollout-plan.md"

_UNIT = r"(%/hr|%|ms|MB|min|hr|seconds|s)?"
_WITH_OP = re.compile(r"(<=|>=|<|>)\s*(\d+(?:\.\d+)?)\s*" + _UNIT + r"(?![A-Za-z])")
_BARE = re.compile(r"(\d+(?:\.\d+)?)\s*" + _UNIT + r"(?![A-Za-z\d-])")
_UNIT_NAMES = {"hr": "h", "seconds": "s", "": ""}
_SCALE = {("s", "ms"): 1000.0, ("ms", "s"): 0.001}
_MEASURES = {"%", "%/hr", "s", "ms", "MB", "min", "h"}


@dataclass(frozen=True)
class SeedValue:
    """A number as the seed writes it: ``<1%``, ``>1s``, ``100%``, ``NPS >8``, or words only."""

    text: str
    op: str | None
    value: float | None
    unit: str


@dataclass(frozen=True)
class SeedRow:
    name: str
    target: SeedValue | None
    alert: SeedValue | None
    monitor: str | None  # the words of a Monitor: or Track: row


@dataclass(frozen=True)
class SeedTable:
    heading: str
    stage: int  # the seed's stage number the table appears under
    rows: tuple[SeedRow, ...]


def parse_value(text: str) -> SeedValue:
    text = text.strip()
    match = _WITH_OP.search(text)
    if match:
        unit = match.group(3) or ""
        return SeedValue(text, match.group(1), float(match.group(2)), _UNIT_NAMES.get(unit, unit))
    match = _BARE.search(text)
    if match:
        unit = match.group(2) or ""
        return SeedValue(text, None, float(match.group(1)), _UNIT_NAMES.get(unit, unit))
    return SeedValue(text, None, None, "")


def _blocks(seed: str) -> Iterator[tuple[int, str, list[str]]]:
    """(stage number, heading, lines) for each ``` block that follows a heading."""
    stage = 0
    heading = ""
    lines = iter(seed.splitlines())
    for line in lines:
        if match := re.match(r"^## Stage (\d+):", line):
            stage = int(match.group(1))
        elif line.startswith("## "):
            stage = 0
        if line.startswith("#### "):
            heading = line[5:].strip()
        elif match := re.match(r"^\*\*(.+?)\*\*:\s*$", line):
            heading = match.group(1)
        elif line.startswith("```") and heading:
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                if inner.strip():
                    body.append(inner.strip())
            yield stage, heading, body
            heading = ""


def seed_tables(seed: str) -> list[SeedTable]:
    tables = []
    for stage, heading, body in _blocks(seed):
        if not stage:  # rollback triggers and the dashboard layout live outside the stages
            continue
        rows = []
        for line in body:
            name, rest = line.split(":", 1)
            parts = re.split(r"\s*(Target|Alert|Monitor|Track):\s*", rest.strip())
            fields = dict(zip(parts[1::2], parts[2::2], strict=True))
            monitor = fields.get("Monitor", fields.get("Track"))
            rows.append(
                SeedRow(
                    name=name.strip(),
                    target=parse_value(fields["Target"]) if "Target" in fields else None,
                    alert=parse_value(fields["Alert"]) if "Alert" in fields else None,
                    monitor=monitor.strip() if monitor is not None else None,
                )
            )
        tables.append(SeedTable(heading, stage, tuple(rows)))
    return tables


def _section(seed: str, heading: str) -> str:
    """The text from a heading line to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = seed.index(heading + "\n") if heading + "\n" in seed else seed.index(heading)
    rest = seed[start + len(heading) :]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{level}}} ", rest, flags=re.M)]
    return rest[: ends[0]] if ends else rest


def _stage_section(seed: str, number: int) -> str:
    match = re.search(rf"^## Stage {number}:.*$", seed, flags=re.M)
    assert match, f"seed has no Stage {number}"
    return _section(seed, match.group(0))


def _expected(value: SeedValue, metric: Metric) -> Threshold | str:
    """The threshold the plan must hold for a seed value, or why it cannot be compared."""
    assert value.value is not None
    if value.op is not None:
        op = Op(value.op)
    elif metric.direction is Direction.HIGHER_IS_BETTER:
        op = Op.GE  # "100%", "5% increase", "80% rewards adoption": at least this much
    else:
        return f"{value.text!r} has no operator and {metric.id} is not higher-is-better"
    unit = value.unit
    if unit == metric.unit:
        scale = 1.0
    elif not unit and metric.unit not in _MEASURES:
        scale = 1.0  # a bare count or score ("<5 critical bugs", "NPS >8")
    elif (unit, metric.unit) in _SCALE:
        scale = _SCALE[(unit, metric.unit)]
    else:
        return f"{value.text!r} is in {unit or 'no unit'!r} but {metric.id} is in {metric.unit!r}"
    return Threshold(op=op, value=value.value * scale)


def _compare(where: str, value: SeedValue | None, held: Threshold | None, metric: Metric) -> Iterator[str]:
    if value is None:
        if held is not None:
            yield f"{where}: the seed has none, the plan has '{held}'"
        return
    if value.value is None:
        return  # words only: the note carries them (checked by the caller)
    expected = _expected(value, metric)
    if isinstance(expected, str):
        yield f"{where}: {expected}"
    elif held is None:
        yield f"{where}: the seed has {value.text!r}, the plan has none"
    elif held.op != expected.op or not math.isclose(held.value, expected.value, rel_tol=1e-9):
        yield f"{where}: the seed has {value.text!r} (= '{expected}' {metric.unit}), the plan has '{held}'"


def _table_mismatches(plan: Plan, table: SeedTable) -> Iterator[str]:
    holders = [
        index for index, stage in enumerate(plan.stages) if table.heading in {t.name for t in stage.tables}
    ]
    if not holders:
        yield f"{table.heading}: no stage evaluates this table"
        return
    if holders[0] != table.stage - 1:
        yield f"{table.heading}: first used in stage {holders[0] + 1}, the seed's stage is {table.stage}"
    gates = next(t for t in plan.stages[holders[0]].tables if t.name == table.heading).gates
    names = [plan.metric(gate.metric).name for gate in gates]
    if names != [row.name for row in table.rows]:
        yield f"{table.heading}: rows {[row.name for row in table.rows]} but the plan has {names}"
        return
    for row, gate in zip(table.rows, gates, strict=True):
        metric = plan.metric(gate.metric)
        where = f"{table.heading} / {row.name}"
        if row.monitor is not None:
            if not gate.monitor_only or gate.note != row.monitor or gate.target or gate.alert:
                yield f"{where}: the seed says monitor-only {row.monitor!r}, the plan has {gate!r}"
            continue
        if gate.monitor_only:
            yield f"{where}: the seed has a target, the plan marks it monitor-only"
        yield from _compare(f"{where} target", row.target, gate.target, metric)
        yield from _compare(f"{where} alert", row.alert, gate.alert, metric)
        for value in (row.target, row.alert):
            if value is not None and value.value is None and gate.note != value.text:
                yield f"{where}: the seed's words {value.text!r} are not the gate's note {gate.note!r}"


def _success_criteria_mismatches(plan: Plan, seed: str) -> Iterator[str]:
    bullets = re.findall(r"^- \*\*(.+?)\*\*: (.+)$", _section(seed, "### Success Criteria"), flags=re.M)
    stage = plan.stages[0]
    table = next((t for t in stage.tables if t.name == "Success Criteria"), None)
    if table is None or len(table.gates) != len(bullets):
        yield f"Success Criteria: {len(bullets)} bullets in the seed, plan table {table!r}"
        return
    for (label, text), gate in zip(bullets, table.gates, strict=True):
        yield from _compare(
            f"Success Criteria / {label}", parse_value(text), gate.target, plan.metric(gate.metric)
        )


def _trigger_mismatches(plan: Plan, seed: str) -> Iterator[str]:
    blocks = [body for _, heading, body in _blocks(seed) if heading == "Automated Rollback Triggers"]
    assert len(blocks) == 1
    if len(blocks[0]) != len(plan.triggers):
        yield f"triggers: the seed has {len(blocks[0])}, the plan {len(plan.triggers)}"
    for line in blocks[0]:
        condition, action = (part.strip() for part in line.split(":", 1))
        trigger = next((t for t in plan.triggers if t.text == condition), None)
        if trigger is None:
            yield f"trigger {condition!r}: not in the plan"
            continue
        if action.endswith("immediately"):
            window = timedelta(0)
        else:
            match = re.search(r"in (\d+) minutes?$", action)
            assert match, action
            window = timedelta(minutes=int(match.group(1)))
        if trigger.window != window:
            yield f"trigger {condition!r}: the seed says {action!r}, the plan waits {trigger.window}"
        value = parse_value(condition)
        yield from _compare(
            f"trigger {condition!r}",
            value if value.value is not None else None,
            trigger.threshold if value.value is not None else None,
            plan.metric(trigger.metric),
        )


def _stage_mismatches(plan: Plan, seed: str) -> Iterator[str]:
    overview = next(body for stage, heading, body in _blocks("#### overview\n" + seed.split("## Stage 1")[0]))
    percentages = [float(p) for p in re.findall(r"(\d+)%", overview[0])]
    sizes = [
        int(float(n) * (1000 if k else 1)) for n, k in re.findall(r"\((\d+)(K)?\+?(?: users)?\)", overview[1])
    ]
    stage_headings = re.findall(r"^## Stage (\d+): (.+?) \(Week (\d+)-(\d+)\)$", seed, flags=re.M)
    if len(stage_headings) != len(plan.stages):
        yield f"stages: the seed has {len(stage_headings)}, the plan {len(plan.stages)}"
        return
    if [s.audience.size for s in plan.stages] != sizes:
        yield f"audience sizes: the seed has {sizes}, the plan {[s.audience.size for s in plan.stages]}"
    last_weights = [s.steps[-1].weight for s in plan.stages[1:]]
    if last_weights != percentages:
        yield f"stage traffic: the seed has {percentages}, the plan's last steps {last_weights}"
    for stage, (number, title, first, last) in zip(plan.stages, stage_headings, strict=True):
        if stage.name != f"Stage {number}: {title}":
            yield f"stage {stage.id}: name {stage.name!r}, the seed's heading is 'Stage {number}: {title}'"
        weeks = timedelta(weeks=int(last) - int(first) + 1)
        if stage.min_duration != weeks:
            yield f"stage {stage.id}: min_duration {stage.min_duration}, the seed gives weeks {first}-{last}"
        section = _stage_section(seed, int(number))
        size = re.search(r"\*\*Size\*\*: \D*?([\d,]+)", section)
        assert size
        if stage.audience.size != int(size.group(1).replace(",", "")):
            yield f"stage {stage.id}: audience size {stage.audience.size}, the seed says {size.group(1)}"

    beta, limited, medium, majority, _full = plan.stages
    split = re.search(r"iOS/Android users \((\d+)/(\d+) split\)", _stage_section(seed, 1))
    assert split
    if beta.audience.platform_split is None or (
        beta.audience.platform_split.ios,
        beta.audience.platform_split.android,
    ) != (
        float(split.group(1)),
        float(split.group(2)),
    ):
        yield f"beta platform split: the seed has {split.groups()}, the plan {beta.audience.platform_split}"
    stage2 = _stage_section(seed, 2)
    android, ios = (float(x) for x in re.search(r"(\d+)% Android, (\d+)% iOS", stage2).groups())  # type: ignore[union-attr]
    if limited.audience.platform_split is None or (
        limited.audience.platform_split.ios,
        limited.audience.platform_split.android,
    ) != (ios, android):
        yield f"limited platform split: the seed has iOS {ios} Android {android}"
    mix = re.search(r"New and existing users \((\d+)/(\d+) split\)", stage2)
    assert mix
    if limited.audience.new_vs_existing != (float(mix.group(1)), float(mix.group(2))):
        yield f"limited new/existing: seed {mix.groups()}, plan {limited.audience.new_vs_existing}"
    ramp = re.search(r"\*\*Gradual rollout\*\*: ([\d%→ ]+?) over (\d+) days", stage2)
    assert ramp
    weights = [float(w) for w in re.findall(r"(\d+)%", ramp.group(1))]
    if [step.weight for step in limited.steps] != weights:
        yield f"limited steps: the seed has {weights}, the plan {[s.weight for s in limited.steps]}"
    ramp_time = sum((step.bake for step in limited.steps[:-1]), timedelta(0))
    if ramp_time != timedelta(days=int(ramp.group(2))):
        yield f"limited ramp: the seed reaches the last step in {ramp.group(2)} days, the plan in {ramp_time}"
    rollback_limited = re.search(r"\*\*Rollback plan\*\*: <(\d+) minutes", stage2)
    rollback_later = re.search(r"\*\*Rollback procedures\*\*: <(\d+) minute", _stage_section(seed, 4))
    assert rollback_limited and rollback_later
    if limited.rollback_objective != timedelta(minutes=int(rollback_limited.group(1))):
        yield f"limited rollback: seed <{rollback_limited.group(1)} min, plan {limited.rollback_objective}"
    for stage in plan.stages[2:]:  # "later": every stage after the limited release
        if stage.rollback_objective != timedelta(minutes=int(rollback_later.group(1))):
            yield f"{stage.id} rollback: seed <{rollback_later.group(1)} min, plan {stage.rollback_objective}"
    if (
        "Exclude VIP customers" not in _stage_section(seed, 3)
        or "vip" not in medium.audience.exclude_segments
    ):
        yield "medium: the seed excludes VIP customers, the plan does not"
    if (
        "including VIP customers" not in _stage_section(seed, 4)
        or "vip" not in majority.audience.include_segments
    ):
        yield "majority: the seed includes VIP customers, the plan does not"


def _feature_mismatches(plan: Plan, seed: str) -> Iterator[str]:
    limited_in_beta = re.findall(
        r"^- (Social sharing|Offline mode) \((.+?)\)$", _stage_section(seed, 1), flags=re.M
    )
    keys = {"Social sharing": "social_sharing", "Offline mode": "offline_mode"}
    assert len(limited_in_beta) == 2
    full_from = 3  # "### Advanced Feature Rollout ... Full Features" is in Stage 3
    assert "Complete social sharing functionality" in _stage_section(seed, full_from)
    assert "Enhanced offline mode" in _stage_section(seed, full_from)
    for label, note in limited_in_beta:
        for index, stage in enumerate(plan.stages):
            feature = stage.features.get(keys[label])
            want = FeatureState.LIMITED if index + 1 < full_from else FeatureState.ENABLED
            if feature is None or feature.state is not want:
                yield f"{stage.id}: {label} should be {want.value}, the plan has {feature}"
            elif want is FeatureState.LIMITED and feature.note != note:
                yield f"{stage.id}: {label} note {feature.note!r}, the seed says {note!r}"
    for name in ("advanced_analytics", "personalized_recommendations"):
        for index, stage in enumerate(plan.stages):
            enabled = stage.features[name].state is FeatureState.ENABLED
            if enabled != (index + 1 >= full_from):
                yield f"{stage.id}: {name} enabled={enabled}, the seed enables it from stage {full_from}"


def _criteria_mismatches(plan: Plan, seed: str) -> Iterator[str]:
    for number in range(2, len(plan.stages) + 1):
        section = _section(seed, f"### Go/No-Go Criteria for Stage {number}")
        stage = plan.stages[number - 2]
        for label, held in (("Go Criteria", stage.go), ("No-Go Criteria", stage.no_go)):
            part = section.split(f"**{label}**:")[1] if f"**{label}**:" in section else ""
            texts = re.findall(r"^- (.+)$", part.split("\n\n")[0] if part else "", flags=re.M)
            # A drill criterion is the stage's own "Disaster recovery" test, not one of the listed criteria.
            drills = [c for c in held if c.kind is CriterionKind.DRILL]
            for criterion in drills:
                if f"**Disaster recovery**: {criterion.text}" not in seed:
                    yield f"{criterion.id}: {criterion.text!r} is not a disaster-recovery test of the seed"
            held = tuple(c for c in held if c.kind is not CriterionKind.DRILL)
            if [c.text for c in held] != texts:
                yield f"{stage.id} {label}: the seed has {texts}, the plan {[c.text for c in held]}"
                continue
            for criterion in held:
                window = re.search(r"for (\d+) hours", criterion.text)
                value = parse_value(criterion.text)
                if window:
                    if criterion.kind is not CriterionKind.WINDOW or criterion.window != timedelta(
                        hours=int(window.group(1))
                    ):
                        yield f"{criterion.id}: {criterion.text!r} should be a {window.group(1)}h window"
                elif value.op is not None and criterion.kind is not CriterionKind.METRICS:
                    assert criterion.metric is not None
                    yield from _compare(
                        criterion.id, value, criterion.threshold, plan.metric(criterion.metric)
                    )
                elif criterion.kind is CriterionKind.MANUAL and criterion.owners != plan.decision_authority:
                    yield f"{criterion.id}: owned by {criterion.owners}, not the decision authority"
    authority = re.search(r"\*\*Decision Authority\*\*: (.+) or (.+)$", seed, flags=re.M)
    assert authority
    if plan.decision_authority != authority.groups():
        yield f"decision authority: the seed says {authority.groups()}, the plan {plan.decision_authority}"


def _objective_mismatches(plan: Plan, seed: str) -> Iterator[str]:
    backups = re.search(r"\*\*Database backups\*\*: Hourly incremental, daily full", seed)
    assert backups
    every = {backup.kind: backup.every for backup in plan.objectives.backups}
    if every != {"incremental": timedelta(hours=1), "full": timedelta(days=1)}:
        yield f"backups: the seed says hourly incremental and daily full, the plan {every}"
    if plan.objectives.disaster_recovery.rpo > timedelta(hours=1):
        yield "disaster recovery: with hourly backups the RPO cannot be above 1h"


def seed_mismatches(plan: Plan, seed: str) -> list[str]:
    """Every difference between the plan and the seed, as readable lines (empty when they match)."""
    problems: list[str] = []
    for table in seed_tables(seed):
        problems += _table_mismatches(plan, table)
    for check in (
        _success_criteria_mismatches,
        _trigger_mismatches,
        _stage_mismatches,
        _feature_mismatches,
        _criteria_mismatches,
        _objective_mismatches,
    ):
        problems += check(plan, seed)
    return problems


@pytest.fixture(scope="module")
def seed() -> str:
    return SEED.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(DEFAULT_PLAN)


def test_seed_copy_is_current() -> None:
    if not SHARED_SEED.exists():
        pytest.skip(f"the customer's original is not on this machine ({SHARED_SEED})")
    assert SEED.read_bytes() == SHARED_SEED.read_bytes()


def test_seed_parser_finds_every_table(seed: str) -> None:
    headings = [table.heading for table in seed_tables(seed)]
    assert headings == [
        "Technical Metrics",
        "User Experience Metrics",
        "Feature-Specific Metrics",
        "Infrastructure Metrics",
        "Business Metrics",
        "Feature Adoption",
        "User Segmentation Analysis",
        "Cohort Analysis",
        "Revenue Analytics",
        "Marketing Analytics",
        "30-Day Metrics",
        "60-Day Metrics",
        "90-Day Metrics",
    ]
    assert sum(len(table.rows) for table in seed_tables(seed)) == 55


@pytest.mark.parametrize(
    "heading",
    [
        "Technical Metrics",
        "User Experience Metrics",
        "Feature-Specific Metrics",
        "Infrastructure Metrics",
        "Business Metrics",
        "Feature Adoption",
        "User Segmentation Analysis",
        "Cohort Analysis",
        "Revenue Analytics",
        "Marketing Analytics",
        "30-Day Metrics",
        "60-Day Metrics",
        "90-Day Metrics",
    ],
)
def test_plan_matches_seed_table(plan: Plan, seed: str, heading: str) -> None:
    (table,) = [t for t in seed_tables(seed) if t.heading == heading]
    assert list(_table_mismatches(plan, table)) == []


@pytest.mark.parametrize(
    "check",
    [
        _success_criteria_mismatches,
        _trigger_mismatches,
        _stage_mismatches,
        _feature_mismatches,
        _criteria_mismatches,
        _objective_mismatches,
    ],
    ids=lambda check: check.__name__.strip("_").removesuffix("_mismatches"),
)
def test_plan_matches_seed_text(plan: Plan, seed: str, check: Any) -> None:
    assert list(check(plan, seed)) == []


def test_post_launch_metrics_wait_their_days(plan: Plan) -> None:
    full = plan.stage("full")
    for table, days in (("30-Day Metrics", 30), ("60-Day Metrics", 60), ("90-Day Metrics", 90)):
        gates = next(t for t in full.tables if t.name == table).gates
        assert {plan.metric(g.metric).evaluable_after for g in gates} == {timedelta(days=days)}, table


def _mutations(data: Any) -> Iterator[tuple[str, Any, Any, Any]]:
    """(what, container, key, mutated value) for every number the seed fixes."""
    units = {metric["id"]: metric.get("unit", "") for metric in data["metrics"]}
    for t_index, table in enumerate(data["tables"]):
        for g_index, gate in enumerate(table["gates"]):
            for field in ("target", "alert"):
                if field in gate:
                    op, number = gate[field].split()
                    if not float(number):
                        continue  # "> 0" is the plan's reading of "Positive ROI": the seed has no number
                    bumped = float(number) * 1.1 if float(number) else 0.5
                    # Keep the alert on the far side of the target so the plan still loads.
                    if field == "alert" and op.startswith("<"):
                        bumped = float(number) * 0.9
                    if field == "target" and op.startswith("<"):
                        bumped = float(number) * 0.9
                    # A percentage stays in 0..100, or the plan no longer loads: move halfway to 100.
                    if units[gate["metric"]] == "%" and bumped > 100:
                        bumped = (float(number) + 100) / 2 if float(number) < 100 else float(number) - 0.5
                    yield f"tables[{t_index}].gates[{g_index}].{field}", gate, field, f"{op} {bumped:g}"
    for s_index, stage in enumerate(data["stages"]):
        yield f"stages[{s_index}].audience.size", stage["audience"], "size", stage["audience"]["size"] + 1
        yield f"stages[{s_index}].min_duration", stage, "min_duration", "3w"
        if s_index:  # the seed gives no rollback time for beta; 30m there is the plan's choice
            yield f"stages[{s_index}].rollback_objective", stage, "rollback_objective", "10m"
    limited = data["stages"][1]
    for step_index, step in enumerate(limited["steps"]):
        yield f"stages[1].steps[{step_index}].weight", step, "weight", step["weight"] + 0.5
    yield "stages[1].steps[0].bake", limited["steps"][0], "bake", "3d"
    for index, trigger in enumerate(data["triggers"]):
        yield f"triggers[{index}].window", trigger, "window", "3m"
    for index in (0, 1):
        trigger = data["triggers"][index]
        op, number = trigger["threshold"].split()
        yield f"triggers[{index}].threshold", trigger, "threshold", f"{op} {float(number) + 1:g}"
    yield "beta platform split", data["stages"][0]["audience"], "platform_split", {"ios": 55, "android": 45}
    yield "limited new/existing", data["stages"][1]["audience"], "new_vs_existing", [70, 30]
    for index, backup in enumerate(data["objectives"]["backups"]):
        yield f"objectives.backups[{index}].every", backup, "every", "2h"


def test_every_seed_number_in_the_plan_is_checked(seed: str) -> None:
    """Change any one number the seed fixes and the comparison reports it (the plan still loads)."""
    data = YAML(typ="rt").load(DEFAULT_PLAN.read_text(encoding="utf-8"))
    missed = []
    checked = 0
    for what, container, key, mutated in list(_mutations(data)):
        original = container[key]
        container[key] = mutated
        try:
            plan = build_plan(data, source="mutated")
            if not seed_mismatches(plan, seed):
                missed.append(f"{what}: {original!r} -> {mutated!r}")
            checked += 1
        finally:
            container[key] = original
    assert missed == []
    assert checked > 80
