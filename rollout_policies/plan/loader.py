"""Load a plan file into a validated ``Plan``, or fail with one line: ``file:line: field.path: problem``.

The file is the ``Plan`` model as YAML with one addition: gate tables are defined once under a
top-level ``tables:`` list and each stage names the tables it evaluates (``tables: [Technical
Metrics, ...]``), so a table carried through five stages is written once. Loading runs in four
passes, each reporting the problem nearest the top of the file:

1. YAML syntax (ruamel.yaml, which keeps line numbers);
2. the shape and types of every field (the pydantic models; error locations are mapped back to
   the line of the offending key);
3. stage table references resolved by name;
4. cross-field rules: known metric ids and providers, thresholds the right way round for the
   metric's direction, comparisons only on lower-is-better gates that decide, unique ids,
   increasing traffic weights, and the rest listed in docs/plan.md.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from rollout_policies.errors import UserError
from rollout_policies.plan.model import (
    Criterion,
    CriterionKind,
    Direction,
    GateTable,
    Metric,
    Op,
    Plan,
    Threshold,
)

DEFAULT_PLAN = Path(__file__).resolve().parent.parent / "plans" / "markethub-mobile.yaml"

# The provider types a plan may name. The plan layer sits below the providers package, so it
# cannot import the providers' registry; the command line passes the registry's names in
# (``load_plan(path, providers=...)``) and this tuple is the default until then. "manual" is not a
# backend: a person supplies the value (a sign-off or a figure from finance or research).
KNOWN_PROVIDERS: tuple[str, ...] = ("prometheus", "cloudwatch", "sql", "json_http", "manual")

_LOWER_OK = {"target": (Op.LT, Op.LE), "alert": (Op.GT, Op.GE)}
_HIGHER_OK = {"target": (Op.GT, Op.GE), "alert": (Op.LT, Op.LE)}

Loc = tuple[str | int, ...]


class PlanError(UserError):
    """A plan file that cannot be used; the message is one line naming the file, line and field."""


@dataclass(frozen=True)
class _Problem:
    loc: Loc  # a path in the file's own structure
    message: str


def load_plan(path: str | Path, *, providers: Collection[str] = KNOWN_PROVIDERS) -> Plan:
    """Read and validate a plan file. Raises ``PlanError`` with a one-line message on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except IsADirectoryError:
        raise PlanError(f"{path}: is a directory, not a plan file") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise PlanError(f"{path}: cannot read plan file: {reason}") from None
    return parse_plan(text, source=str(path), providers=providers)


def parse_plan(text: str, *, source: str = "<plan>", providers: Collection[str] = KNOWN_PROVIDERS) -> Plan:
    """Validate plan text; ``source`` names it in error messages (normally the file path)."""
    return build_plan(_parse_yaml(text, source), source=source, providers=providers)


def build_plan(data: Any, *, source: str = "<plan>", providers: Collection[str] = KNOWN_PROVIDERS) -> Plan:
    """Validate already-parsed YAML (ruamel round-trip data keeps the line numbers for errors)."""
    if data is None:
        raise PlanError(f"{source}: the plan file is empty")
    if not isinstance(data, Mapping):
        raise PlanError(f"{source}:1: plan: expected a mapping of plan fields, got {_kind(data)}")

    tables, problems = _validate_tables(data)
    _raise_first(problems, data, source)

    resolved, problems = _resolve_stage_tables(data, tables)
    _raise_first(problems, data, source)

    try:
        plan = Plan.model_validate(resolved)
    except ValidationError as err:
        _raise_first(_pydantic_problems(err, ()), data, source)
        raise  # unreachable: a ValidationError always has at least one error

    _raise_first(list(_cross_check(plan, tables, data, frozenset(providers))), data, source)
    return plan


# --- YAML -----------------------------------------------------------------------------------------


def _parse_yaml(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except DuplicateKeyError as err:
        line = err.problem_mark.line + 1 if err.problem_mark is not None else None
        key = _duplicate_key(err)
        where = f"{source}:{line}" if line else source
        raise PlanError(f"{where}: {key}: duplicate key") from None
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = " ".join(str(err.problem or err.context or "invalid YAML").split())
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise PlanError(f"{where}: YAML syntax error: {problem}") from None
    except YAMLError as err:
        raise PlanError(f"{source}: YAML syntax error: {' '.join(str(err).split())}") from None


def _duplicate_key(err: DuplicateKeyError) -> str:
    # ruamel's problem text is 'found duplicate key "name" with value ...'
    problem = str(err.problem or "")
    if '"' in problem:
        return problem.split('"')[1]
    return "mapping"


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


# --- passes 2 and 3: shape, then table references ----------------------------------------------------


_TABLES = TypeAdapter(tuple[GateTable, ...])


def _validate_tables(data: Mapping[str, Any]) -> tuple[dict[str, GateTable], list[_Problem]]:
    raw = data.get("tables", [])
    try:
        tables = _TABLES.validate_python(raw if raw is not None else [])
    except ValidationError as err:
        return {}, _pydantic_problems(err, ("tables",))
    by_name: dict[str, GateTable] = {}
    problems = []
    for index, table in enumerate(tables):
        if table.name in by_name:
            problems.append(_Problem(("tables", index, "name"), f"duplicate table name {table.name!r}"))
        by_name.setdefault(table.name, table)
    return by_name, problems


def _resolve_stage_tables(
    data: Mapping[str, Any], tables: Mapping[str, GateTable]
) -> tuple[dict[str, Any], list[_Problem]]:
    """The plan with each stage's table names replaced by the tables (everything else untouched)."""
    resolved = {key: value for key, value in data.items() if key != "tables"}
    stages = data.get("stages")
    if not isinstance(stages, list):
        return resolved, []  # pydantic reports the missing or mistyped list
    problems: list[_Problem] = []
    new_stages: list[Any] = []
    for index, stage in enumerate(stages):
        if not isinstance(stage, Mapping) or "tables" not in stage:
            new_stages.append(stage)
            continue
        names = stage["tables"]
        if not isinstance(names, list):
            message = f"expected a list of table names, got {_kind(names)}"
            problems.append(_Problem(("stages", index, "tables"), message))
            continue
        picked: list[GateTable] = []
        for position, name in enumerate(names):
            if not isinstance(name, str):
                loc: Loc = ("stages", index, "tables", position)
                problems.append(_Problem(loc, f"expected a table name, got {_kind(name)}"))
            elif name not in tables:
                known = ", ".join(sorted(tables)) or "none defined"
                message = f"unknown table {name!r} (tables: {known})"
                problems.append(_Problem(("stages", index, "tables", position), message))
            else:
                picked.append(tables[name])
        new_stages.append({**stage, "tables": picked})
    resolved["stages"] = new_stages
    return resolved, problems


def _pydantic_problems(err: ValidationError, prefix: Loc) -> list[_Problem]:
    problems = []
    for error in err.errors(include_url=False):
        loc = prefix + tuple(part for part in error["loc"] if not _is_schema_tag(part))
        message = str(error["msg"])
        for noise in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(noise)
        if error["type"] == "extra_forbidden":
            message = "unknown field (misspelt, or not part of the plan format)"
        elif error["type"] == "missing":
            message = "required field is missing"
        problems.append(_Problem(loc, " ".join(message.split())))
    return problems


def _is_schema_tag(part: str | int) -> bool:
    # pydantic puts union branch and validator names into locations; they are not plan fields.
    return isinstance(part, str) and ("[" in part or part in ("Threshold", "Feature"))


# --- pass 4: cross-field rules ----------------------------------------------------------------------


def _cross_check(
    plan: Plan, tables: Mapping[str, GateTable], data: Mapping[str, Any], providers: frozenset[str]
) -> Iterator[_Problem]:
    metrics: dict[str, Metric] = {}
    for index, metric in enumerate(plan.metrics):
        if metric.id in metrics:
            yield _Problem(("metrics", index, "id"), f"duplicate metric id {metric.id!r}")
        metrics.setdefault(metric.id, metric)
        if metric.source.provider not in providers:
            known = ", ".join(sorted(providers))
            yield _Problem(
                ("metrics", index, "source", "provider"),
                f"unknown provider {metric.source.provider!r} (known: {known})",
            )

    def unknown_metric(metric_id: str, loc: Loc) -> _Problem | None:
        if metric_id in metrics:
            return None
        return _Problem(loc, f"unknown metric {metric_id!r} (not defined under metrics)")

    for t_index, table in enumerate(tables.values()):
        for g_index, gate in enumerate(table.gates):
            loc: Loc = ("tables", _table_index(data, table.name, t_index), "gates", g_index)
            problem = unknown_metric(gate.metric, (*loc, "metric"))
            if problem:
                yield problem
                continue
            metric = metrics[gate.metric]
            if gate.comparison is not None:
                problem = _comparison_problem(gate.monitor_only, metric, (*loc, "comparison"))
                if problem:
                    yield problem
                    continue
            if gate.monitor_only:
                continue
            if gate.target is None and gate.alert is None:
                if gate.comparison is not None:
                    continue  # a comparison alone decides the gate
                if metric.source.provider != "manual":
                    yield _Problem(
                        loc,
                        "a gate needs a target (or monitor_only: true, or a metric a person judges "
                        "with provider manual)",
                    )
                continue
            if metric.direction is None:
                yield _Problem(
                    (*loc, "metric"),
                    f"metric {metric.id!r} has no direction, so it can only be used by monitor-only gates",
                )
                continue
            yield from _direction_problems(metric.direction, gate.target, gate.alert, loc)

    stage_ids: set[str] = set()
    criterion_ids: set[str] = set()
    authority = set(plan.decision_authority)
    previous_weight: float | None = None
    for s_index, stage in enumerate(plan.stages):
        sloc: Loc = ("stages", s_index)
        if stage.id in stage_ids:
            yield _Problem((*sloc, "id"), f"duplicate stage id {stage.id!r}")
        stage_ids.add(stage.id)
        if not stage.steps:
            yield _Problem((*sloc, "steps"), "a stage needs at least one traffic step")
        for step_index, step in enumerate(stage.steps):
            if previous_weight is not None and step.weight <= previous_weight:
                where = "the previous step" if step_index else "the previous stage's last step"
                yield _Problem(
                    (*sloc, "steps", step_index, "weight"),
                    f"traffic weights must increase: {step.weight:g} is not above "
                    f"{where} ({previous_weight:g})",
                )
            previous_weight = step.weight
        baked = sum((step.bake for step in stage.steps[:-1]), start=stage.min_duration * 0)
        if baked > stage.min_duration:
            yield _Problem(
                (*sloc, "steps"),
                "the steps before the last bake longer than the stage's min_duration",
            )
        split = stage.audience.platform_split
        if split is not None and split.ios + split.android != 100:
            yield _Problem(
                (*sloc, "audience", "platform_split"),
                f"ios and android must add up to 100, not {split.ios + split.android:g}",
            )
        mix = stage.audience.new_vs_existing
        if mix is not None and mix[0] + mix[1] != 100:
            yield _Problem(
                (*sloc, "audience", "new_vs_existing"),
                f"new and existing must add up to 100, not {mix[0] + mix[1]:g}",
            )
        stage_tables = {table.name for table in stage.tables}
        for group in ("go", "no_go"):
            for c_index, criterion in enumerate(getattr(stage, group)):
                cloc: Loc = (*sloc, group, c_index)
                if criterion.id in criterion_ids:
                    yield _Problem((*cloc, "id"), f"duplicate criterion id {criterion.id!r}")
                criterion_ids.add(criterion.id)
                yield from _criterion_problems(criterion, cloc, stage_tables, authority, unknown_metric)

    for index, trigger in enumerate(plan.triggers):
        tloc: Loc = ("triggers", index)
        problem = unknown_metric(trigger.metric, (*tloc, "metric"))
        if problem:
            yield problem
            continue
        direction = metrics[trigger.metric].direction
        bad_ops = {Direction.LOWER_IS_BETTER: (Op.LT, Op.LE), Direction.HIGHER_IS_BETTER: (Op.GT, Op.GE)}
        if direction is not None and trigger.threshold.op in bad_ops[direction]:
            yield _Problem(
                (*tloc, "threshold"),
                f"'{trigger.threshold}' fires when {trigger.metric!r} is good "
                f"({direction.value} is better); a rollback trigger fires on the bad side",
            )
    # A feature flag the infra sets in one stage but not the next would silently keep its old state.
    feature_names = [set(stage.features) for stage in plan.stages]
    every_name = set().union(*feature_names) if feature_names else set()
    for s_index, names in enumerate(feature_names):
        missing = sorted(every_name - names)
        if names and missing:
            yield _Problem(
                ("stages", s_index, "features"),
                f"lists no state for {', '.join(missing)} (every stage names the same features)",
            )
    for name in plan.stable_features:
        if name not in every_name:
            yield _Problem(
                ("stable_features", name),
                f"{name!r} is not a feature any stage names ({', '.join(sorted(every_name)) or 'none'})",
            )
    trigger_ids = [trigger.id for trigger in plan.triggers]
    for index, trigger_id in enumerate(trigger_ids):
        if trigger_id in trigger_ids[:index]:
            yield _Problem(("triggers", index, "id"), f"duplicate trigger id {trigger_id!r}")

    dr = plan.objectives.disaster_recovery
    if dr.primary not in dr.regions:
        yield _Problem(
            ("objectives", "disaster_recovery", "primary"),
            f"primary region {dr.primary!r} is not one of the regions ({', '.join(dr.regions)})",
        )


def _table_index(data: Mapping[str, Any], name: str, fallback: int) -> int:
    """The table's position in the file (tables are deduplicated by name before this pass)."""
    raw = data.get("tables") or []
    for index, table in enumerate(raw):
        if isinstance(table, Mapping) and table.get("name") == name:
            return index
    return fallback


def _comparison_problem(monitor_only: bool, metric: Metric, loc: Loc) -> _Problem | None:
    """A comparison gate decides, and counts bad events (or slow requests): lower must be better."""
    if monitor_only:
        return _Problem(loc, "a monitor-only gate never decides, so it cannot have a comparison")
    if metric.direction is not Direction.LOWER_IS_BETTER:
        return _Problem(
            loc,
            f"metric {metric.id!r} is not lower-is-better; a comparison counts bad events or slow "
            "requests, so it needs direction: lower",
        )
    return None


def _direction_problems(
    direction: Direction, target: Threshold | None, alert: Threshold | None, loc: Loc
) -> Iterator[_Problem]:
    allowed = _LOWER_OK if direction is Direction.LOWER_IS_BETTER else _HIGHER_OK
    better = "lower" if direction is Direction.LOWER_IS_BETTER else "higher"
    for field, threshold in (("target", target), ("alert", alert)):
        if threshold is not None and threshold.op not in allowed[field]:
            ops = " or ".join(op.value for op in allowed[field])
            yield _Problem(
                (*loc, field),
                f"'{threshold}' is the wrong way round: {better} is better, "
                f"so {'a target' if field == 'target' else 'an alert'} uses {ops}",
            )
            return
    if target is not None and alert is not None:
        wrong = alert.value < target.value if better == "lower" else alert.value > target.value
        if wrong:
            relation = "at or above" if better == "lower" else "at or below"
            yield _Problem(
                (*loc, "alert"),
                f"'{alert}' must sit {relation} the target '{target}' ({better} is better)",
            )


def _criterion_problems(
    criterion: Criterion,
    loc: Loc,
    stage_tables: set[str],
    authority: set[str],
    unknown_metric: Callable[[str, Loc], _Problem | None],
) -> Iterator[_Problem]:
    kind = criterion.kind
    if kind is CriterionKind.METRICS:
        if not criterion.tables:
            yield _Problem(loc, "a metrics criterion names the gate tables it judges (tables: [...])")
        for index, name in enumerate(criterion.tables):
            if name not in stage_tables:
                yield _Problem((*loc, "tables", index), f"table {name!r} is not one of this stage's tables")
    elif kind in (CriterionKind.COUNT, CriterionKind.WINDOW):
        if criterion.metric is None:
            yield _Problem(loc, f"a {kind.value} criterion needs a metric")
        else:
            problem = unknown_metric(criterion.metric, (*loc, "metric"))
            if problem:
                yield problem
        if criterion.threshold is None:
            yield _Problem(loc, f"a {kind.value} criterion needs a threshold")
        if kind is CriterionKind.WINDOW and not criterion.window:
            yield _Problem(loc, "a window criterion needs a window longer than zero (such as 48h)")
    elif kind is CriterionKind.MANUAL:
        if not criterion.owners:
            yield _Problem(loc, "a manual criterion needs owners (people from decision_authority)")
        for index, owner in enumerate(criterion.owners):
            if owner not in authority:
                yield _Problem(
                    (*loc, "owners", index),
                    f"owner {owner!r} is not in decision_authority ({', '.join(sorted(authority))})",
                )


# --- reporting --------------------------------------------------------------------------------------


def _raise_first(problems: Sequence[_Problem], data: Any, source: str) -> None:
    if not problems:
        return
    located = [(_line(data, problem.loc), index, problem) for index, problem in enumerate(problems)]
    # The problem nearest the top of the file first: it is the one a reader meets first.
    located.sort(key=lambda item: (item[0] if item[0] is not None else 0, item[1]))
    line, _, problem = located[0]
    where = f"{source}:{line}" if line is not None else source
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise PlanError(f"{where}: {format_loc(problem.loc)}: {problem.message}{more}")


def format_loc(loc: Loc) -> str:
    """``("stages", 1, "steps", 0, "weight")`` -> ``stages[1].steps[0].weight``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "plan"


def _line(data: Any, loc: Loc) -> int | None:
    """The 1-based line of the deepest part of ``loc`` present in the YAML (a missing field's parent)."""
    node = data
    line: int | None = 1
    for part in loc:
        lc = getattr(node, "lc", None)
        if isinstance(node, Mapping) and isinstance(part, str) and part in node:
            if lc is not None:
                line = lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            if lc is not None:
                line = lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line
