"""Load a plan file into a validated ``Plan``, or fail with one line: ``file:line: field.path: problem``.

The file is the ``Plan`` model as YAML with one addition: gate tables are defined once under a
top-level ``tables:`` list and each stage names the tables it evaluates (``tables: [Technical
Metrics, ...]``), so a table carried through five stages is written once. Loading runs in four
passes, each reporting the problem nearest the top of the file:

0. before any parsing: only a regular file, at most ``MAX_PLAN_BYTES``, and a walk over the YAML
   events (no recursion) that bounds nesting depth, aliases and what aliases expand to, so a YAML
   bomb or a deeply nested file is one line, never a RecursionError or a hang;
1. YAML syntax (ruamel.yaml, which keeps line numbers);
2. the shape and types of every field (the pydantic models; error locations are mapped back to
   the line of the offending key);
3. stage table references resolved by name;
4. cross-field rules, one function each (``_RULES``): known metric ids and providers, thresholds
   the right way round for the metric's direction and possible within its valid range, comparisons
   only on lower-is-better gates that decide, unique ids, increasing traffic weights ending at 100,
   and the rest listed in docs/plan.md.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)

from rollout_policies.plan.model import (
    DRILLS,
    Criterion,
    CriterionKind,
    Direction,
    Gate,
    GateTable,
    Metric,
    Op,
    Plan,
    PlanError,
    Stage,
    Threshold,
)

DEFAULT_PLAN = Path(__file__).resolve().parent.parent / "plans" / "markethub-mobile.yaml"

# The provider types a plan may name. The plan layer sits below the providers package, so it
# cannot import the providers' registry; the command line passes the registry's names in
# (``load_plan(path, providers=...)``) and this tuple is the default until then. "manual" is not a
# backend: a person supplies the value (a sign-off or a figure from finance or research).
KNOWN_PROVIDERS: tuple[str, ...] = ("prometheus", "cloudwatch", "sql", "json_http", "manual", "metrics_file")

# Bounds checked before parsing. The shipped plan is about 40 KB, nested 6 deep, with 3 aliases that
# expand to a few hundred nodes; these leave room for plans many times its size and nothing more.
MAX_PLAN_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 200
MAX_NODES = 200_000  # nodes after every alias is expanded: what a billion-laughs file blows up
MAX_DIGITS = 100  # an integer longer than this is a typo (and Python refuses 4300 digits)

_LOWER_OK = {"target": (Op.LT, Op.LE), "alert": (Op.GT, Op.GE)}
_HIGHER_OK = {"target": (Op.GT, Op.GE), "alert": (Op.LT, Op.LE)}

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class _Problem:
    loc: Loc  # a path in the file's own structure
    message: str


def load_plan(path: str | Path, *, providers: Collection[str] = KNOWN_PROVIDERS) -> Plan:
    """Read and validate a plan file. Raises ``PlanError`` with a one-line message on any problem."""
    path = Path(path)
    try:
        text = _read_plan_file(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise PlanError(f"{path}: cannot read plan file: {err}") from None
    return parse_plan(text, source=str(path), providers=providers)


_NOT_A_FILE = (
    (stat.S_ISDIR, "is a directory, not a plan file"),
    (stat.S_ISFIFO, "is a named pipe, not a plan file"),
    (stat.S_ISCHR, "is a character device, not a plan file"),
    (stat.S_ISBLK, "is a block device, not a plan file"),
    (stat.S_ISSOCK, "is a socket, not a plan file"),
)


def _read_plan_file(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_PLAN_BYTES``; anything else is a PlanError.

    Opened non-blocking and checked on the open descriptor, so a named pipe never blocks the read
    and nothing can swap the file between the check and the read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except IsADirectoryError:
        raise PlanError(f"{path}: is a directory, not a plan file") from None
    except OSError as err:
        raise PlanError(f"{path}: cannot read plan file: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        for test, problem in _NOT_A_FILE:
            if test(info.st_mode):
                raise PlanError(f"{path}: {problem}")
        if not stat.S_ISREG(info.st_mode):
            raise PlanError(f"{path}: not a regular file, not a plan file")
        if info.st_size > MAX_PLAN_BYTES:
            raise PlanError(f"{path}: {_too_big(info.st_size)}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            data = handle.read(MAX_PLAN_BYTES + 1)  # a file that grew since fstat is still bounded
    except OSError as err:
        raise PlanError(f"{path}: cannot read plan file: {err.strerror or err}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(f"{path}: {_too_big(len(data))}")
    return data


def _too_big(size: int) -> str:
    return f"{size} bytes is more than a plan file may hold ({MAX_PLAN_BYTES} bytes)"


def parse_plan(text: str, *, source: str = "<plan>", providers: Collection[str] = KNOWN_PROVIDERS) -> Plan:
    """Validate plan text; ``source`` names it in error messages (normally the file path)."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_PLAN_BYTES:
        raise PlanError(f"{source}: {_too_big(size)}")
    _check_structure(text, source)
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


# --- pass 0: bounds on the YAML's structure, before anything is built -------------------------------


@dataclass
class _Frame:
    """One open mapping or sequence in the event walk."""

    loc: Loc
    mapping: bool
    expect_key: bool = True  # mapping: the next node is a key
    key: str | int = ""  # mapping: the key whose value comes next
    index: int = -1  # sequence: the position of the current item
    nodes: int = 1  # nodes in this collection so far, aliases expanded
    anchor: str | None = None


_PLAIN_INT = re.compile(r"^[-+]?[0-9][0-9_]*$")


def _check_structure(text: str, source: str) -> None:
    """Walk the YAML's events (the parser keeps its own stack, so depth costs no recursion) and stop
    at the first node nested deeper than ``MAX_DEPTH``, the alias past ``MAX_ALIASES``, the point
    where aliases expand past ``MAX_NODES`` nodes, or an integer longer than ``MAX_DIGITS``.

    The walk runs on libyaml's C parser when it is installed (about 30 times faster than the pure
    one); should that parser refuse the text, it runs again on the pure parser the loader uses, so
    nothing it accepts goes unchecked. Syntax errors are left to the parse that follows, which
    reports them with their line."""
    try:
        _walk(YAML(typ="safe").parse(text), source)
    except YAMLError:
        try:
            _walk(YAML(typ="rt").parse(text), source)
        except YAMLError:
            return


def _walk(events: Iterator[Any], source: str) -> None:
    stack: list[_Frame] = []
    anchors: dict[str, int] = {}  # anchor -> nodes in its node, aliases expanded
    aliases = 0
    total = 0
    for event in events:
        if isinstance(event, CollectionEndEvent):
            done = stack.pop()
            if done.anchor is not None:
                anchors[done.anchor] = done.nodes
            _node_done(stack, done.nodes)
            continue
        if not isinstance(event, NodeEvent):
            continue
        loc = _event_loc(stack)
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                _structure_error(source, line, loc, f"more than {MAX_ALIASES} aliases in one plan")
            size = anchors.get(str(event.anchor), 1)
        elif isinstance(event, ScalarEvent):
            size = 1
            value = event.value or ""
            if _plain(event) and _PLAIN_INT.match(value) and len(value) > MAX_DIGITS:
                _structure_error(source, line, loc, f"a number of {len(value)} digits (at most {MAX_DIGITS})")
            if event.anchor is not None:
                anchors[str(event.anchor)] = 1
        else:
            size = 0
        total += size
        if total > MAX_NODES:
            _structure_error(
                source, line, loc, f"more than {MAX_NODES} values once aliases are expanded (a YAML bomb?)"
            )
        if isinstance(event, CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                _structure_error(source, line, loc, f"nested more than {MAX_DEPTH} levels deep")
            anchor = None if event.anchor is None else str(event.anchor)
            stack.append(_Frame(loc, mapping=isinstance(event, MappingStartEvent), anchor=anchor))
            total += 1
        else:
            _node_done(stack, size, key=event.value if isinstance(event, ScalarEvent) else None)


def _plain(event: ScalarEvent) -> bool:
    """An unquoted scalar (the C parser says so with "", the pure one with None)."""
    return event.style in (None, "")


def _event_loc(stack: list[_Frame]) -> Loc:
    """Where the next node sits: the parent's location plus its key or index."""
    if not stack:
        return ()
    top = stack[-1]
    if top.mapping:
        return top.loc if top.expect_key else (*top.loc, top.key)
    return (*top.loc, top.index + 1)


def _node_done(stack: list[_Frame], nodes: int, key: str | None = None) -> None:
    """A node ended inside the top frame: count it, and move the mapping on from key to value."""
    if not stack:
        return
    top = stack[-1]
    top.nodes += nodes
    if top.mapping:
        if top.expect_key:
            top.key = key if key is not None else "?"
        top.expect_key = not top.expect_key
    else:
        top.index += 1


def _bad_scalar(text: str) -> tuple[int | None, Loc]:
    """The line and place of the first plain scalar that YAML cannot build on its own."""
    stack: list[_Frame] = []
    one = YAML(typ="rt")
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, CollectionEndEvent):
            stack.pop()
            _node_done(stack, 1)
        elif isinstance(event, CollectionStartEvent):
            stack.append(_Frame(_event_loc(stack), mapping=isinstance(event, MappingStartEvent)))
        elif isinstance(event, NodeEvent):
            loc = _event_loc(stack)
            if isinstance(event, ScalarEvent) and _plain(event):
                try:
                    one.load(event.value)
                except (ValueError, OverflowError):
                    return (event.start_mark.line + 1 if event.start_mark else None), loc
                except YAMLError:
                    pass
            _node_done(stack, 1, key=event.value if isinstance(event, ScalarEvent) else None)
    return None, ()


def _structure_error(source: str, line: int | None, loc: Loc, problem: str) -> NoReturn:
    where = f"{source}:{line}" if line is not None else source
    raise PlanError(f"{where}: {format_loc(loc)}: {problem}")


# --- pass 1: YAML -----------------------------------------------------------------------------------


def _parse_yaml(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except (ValueError, OverflowError) as err:
        # A scalar the YAML constructor cannot build, such as the timestamp 2026-13-45.
        problem = " ".join(str(err).split())
        line, loc = _bad_scalar(text)
        where = f"{source}:{line}" if line is not None else source
        raise PlanError(f"{where}: {format_loc(loc)}: not a value YAML can read: {problem}") from None
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


# --- pass 4: cross-field rules, one function each ---------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What every cross-field rule reads: the built plan, its tables and the file's own data."""

    plan: Plan
    tables: Mapping[str, GateTable]
    data: Mapping[str, Any]
    providers: frozenset[str]
    metrics: Mapping[str, Metric]  # the first definition of each metric id

    def gates(self) -> Iterator[tuple[Loc, Gate, Metric | None]]:
        """Every gate of every table, where it sits in the file, and its metric (None: unknown)."""
        for t_index, table in enumerate(self.tables.values()):
            for g_index, gate in enumerate(table.gates):
                loc: Loc = ("tables", _table_index(self.data, table.name, t_index), "gates", g_index)
                yield loc, gate, self.metrics.get(gate.metric)

    def criteria(self) -> Iterator[tuple[Loc, Stage, bool, Criterion]]:
        """Every go and no-go criterion: where it sits, its stage, and whether it is a no-go."""
        for s_index, stage in enumerate(self.plan.stages):
            for group in ("go", "no_go"):
                for c_index, criterion in enumerate(getattr(stage, group)):
                    yield ("stages", s_index, group, c_index), stage, group == "no_go", criterion


def _cross_check(
    plan: Plan, tables: Mapping[str, GateTable], data: Mapping[str, Any], providers: frozenset[str]
) -> Iterator[_Problem]:
    metrics: dict[str, Metric] = {}
    for metric in plan.metrics:
        metrics.setdefault(metric.id, metric)
    context = _Context(plan, tables, data, providers, metrics)
    for rule in _RULES:
        yield from rule(context)


def _unknown_metric(metric_id: str, loc: Loc) -> _Problem:
    return _Problem(loc, f"unknown metric {metric_id!r} (not defined under metrics)")


def _unique_metric_ids(ctx: _Context) -> Iterator[_Problem]:
    seen: set[str] = set()
    for index, metric in enumerate(ctx.plan.metrics):
        if metric.id in seen:
            yield _Problem(("metrics", index, "id"), f"duplicate metric id {metric.id!r}")
        seen.add(metric.id)


def _known_providers(ctx: _Context) -> Iterator[_Problem]:
    for index, metric in enumerate(ctx.plan.metrics):
        if metric.source.provider not in ctx.providers:
            known = ", ".join(sorted(ctx.providers))
            yield _Problem(
                ("metrics", index, "source", "provider"),
                f"unknown provider {metric.source.provider!r} (known: {known})",
            )


def _gate_metrics_defined(ctx: _Context) -> Iterator[_Problem]:
    for loc, gate, metric in ctx.gates():
        if metric is None:
            yield _unknown_metric(gate.metric, (*loc, "metric"))


def _gate_comparisons_fit(ctx: _Context) -> Iterator[_Problem]:
    for loc, gate, metric in ctx.gates():
        if metric is not None and gate.comparison is not None:
            problem = _comparison_problem(gate.monitor_only, metric, (*loc, "comparison"))
            if problem:
                yield problem


def _deciding_gates(ctx: _Context) -> Iterator[tuple[Loc, Gate, Metric]]:
    """Gates that decide, with a known metric and a comparison that fits (others have their problem)."""
    for loc, gate, metric in ctx.gates():
        if metric is None or gate.monitor_only:
            continue
        if gate.comparison is not None and _comparison_problem(False, metric, loc) is not None:
            continue
        yield loc, gate, metric


def _gates_have_targets(ctx: _Context) -> Iterator[_Problem]:
    for loc, gate, metric in _deciding_gates(ctx):
        # A comparison alone decides a gate; a person judges a manual metric against its note.
        judged_otherwise = gate.comparison is not None or metric.source.provider == "manual"
        if gate.target is None and gate.alert is None and not judged_otherwise:
            yield _Problem(
                loc,
                "a gate needs a target (or monitor_only: true, or a metric a person judges "
                "with provider manual)",
            )


def _gate_thresholds_match_direction(ctx: _Context) -> Iterator[_Problem]:
    for loc, gate, metric in _deciding_gates(ctx):
        if gate.target is None and gate.alert is None:
            continue
        if metric.direction is None:
            yield _Problem(
                (*loc, "metric"),
                f"metric {metric.id!r} has no direction, so it can only be used by monitor-only gates",
            )
            continue
        yield from _direction_problems(metric.direction, gate.target, gate.alert, loc)


def _thresholds_within_range(ctx: _Context) -> Iterator[_Problem]:
    """A threshold no valid reading can meet, or every valid reading meets, judges nothing."""
    found: list[tuple[Loc, str, Threshold]] = []
    for loc, gate, metric in ctx.gates():
        if metric is not None:
            found += [
                ((*loc, name), metric.id, t)
                for name, t in (("target", gate.target), ("alert", gate.alert))
                if t
            ]
    for loc, _stage, _no_go, criterion in ctx.criteria():
        if criterion.metric is not None and criterion.threshold is not None:
            found.append(((*loc, "threshold"), criterion.metric, criterion.threshold))
    for index, trigger in enumerate(ctx.plan.triggers):
        found.append((("triggers", index, "threshold"), trigger.metric, trigger.threshold))
    for loc, metric_id, threshold in found:
        metric = ctx.metrics.get(metric_id)
        if metric is not None:
            problem = _range_problem(threshold, metric)
            if problem:
                yield _Problem(loc, problem)


def _range_problem(threshold: Threshold, metric: Metric) -> str | None:
    low, high = metric.valid_range.min, metric.valid_range.max
    low = -math.inf if low is None else low
    high = math.inf if high is None else high
    op, value = threshold.op, threshold.value
    never = {
        Op.LT: value <= low,
        Op.LE: value < low,
        Op.GT: value >= high,
        Op.GE: value > high,
        Op.EQ: not low <= value <= high,
    }[op]
    always = {
        Op.LT: value > high,
        Op.LE: value >= high,
        Op.GT: value < low,
        Op.GE: value <= low,
        Op.EQ: False,
    }[op]
    if never:
        return f"'{threshold}' can never hold: {metric.id} is always {metric.range_text}"
    if always:
        return (
            f"'{threshold}' holds for every value {metric.id} can take (always {metric.range_text}), "
            "so it judges nothing"
        )
    return None


def _unique_stage_ids(ctx: _Context) -> Iterator[_Problem]:
    seen: set[str] = set()
    for index, stage in enumerate(ctx.plan.stages):
        if stage.id in seen:
            yield _Problem(("stages", index, "id"), f"duplicate stage id {stage.id!r}")
        seen.add(stage.id)


def _at_least_one_stage(ctx: _Context) -> Iterator[_Problem]:
    if not ctx.plan.stages:
        yield _Problem(("stages",), "a plan needs at least one stage")


def _stages_have_steps(ctx: _Context) -> Iterator[_Problem]:
    for index, stage in enumerate(ctx.plan.stages):
        if not stage.steps:
            yield _Problem(("stages", index, "steps"), "a stage needs at least one traffic step")


def _weights_increase(ctx: _Context) -> Iterator[_Problem]:
    previous: float | None = None
    for s_index, stage in enumerate(ctx.plan.stages):
        for step_index, step in enumerate(stage.steps):
            if previous is not None and step.weight <= previous:
                where = "the previous step" if step_index else "the previous stage's last step"
                yield _Problem(
                    ("stages", s_index, "steps", step_index, "weight"),
                    f"traffic weights must increase: {step.weight:g} is not above {where} ({previous:g})",
                )
            previous = step.weight


def _last_stage_serves_everyone(ctx: _Context) -> Iterator[_Problem]:
    """A rollout ends with the candidate serving all traffic; anything less never finishes."""
    if not ctx.plan.stages or not ctx.plan.stages[-1].steps:
        return
    index = len(ctx.plan.stages) - 1
    last = ctx.plan.stages[-1].steps
    if last[-1].weight != 100:
        yield _Problem(
            ("stages", index, "steps", len(last) - 1, "weight"),
            f"the last stage must end at weight 100 (the whole audience), not {last[-1].weight:g}",
        )


def _steps_fit_min_duration(ctx: _Context) -> Iterator[_Problem]:
    for index, stage in enumerate(ctx.plan.stages):
        baked = sum((step.bake for step in stage.steps[:-1]), start=timedelta(0))
        if baked > stage.min_duration:
            yield _Problem(
                ("stages", index, "steps"),
                "the steps before the last bake longer than the stage's min_duration",
            )


def _comparisons_are_like_for_like(ctx: _Context) -> Iterator[_Problem]:
    for index, stage in enumerate(ctx.plan.stages):
        problem = _like_for_like_problem(stage, ("stages", index))
        if problem:
            yield problem


def _audience_splits_add_up(ctx: _Context) -> Iterator[_Problem]:
    for index, stage in enumerate(ctx.plan.stages):
        split = stage.audience.platform_split
        if split is not None and not math.isclose(split.ios + split.android, 100):
            yield _Problem(
                ("stages", index, "audience", "platform_split"),
                f"ios and android must add up to 100, not {split.ios + split.android:g}",
            )
        mix = stage.audience.new_vs_existing
        if mix is not None and not math.isclose(mix[0] + mix[1], 100):
            yield _Problem(
                ("stages", index, "audience", "new_vs_existing"),
                f"new and existing must add up to 100, not {mix[0] + mix[1]:g}",
            )


def _unique_criterion_ids(ctx: _Context) -> Iterator[_Problem]:
    seen: set[str] = set()
    for loc, _stage, _no_go, criterion in ctx.criteria():
        if criterion.id in seen:
            yield _Problem((*loc, "id"), f"duplicate criterion id {criterion.id!r}")
        seen.add(criterion.id)


def _criteria_complete(ctx: _Context) -> Iterator[_Problem]:
    authority = set(ctx.plan.decision_authority)
    for loc, stage, _no_go, criterion in ctx.criteria():
        stage_tables = {table.name for table in stage.tables}
        yield from _criterion_problems(criterion, loc, stage_tables, authority, ctx.metrics)


def _criteria_on_the_right_side(ctx: _Context) -> Iterator[_Problem]:
    """A go criterion holds on the metric's good side, a no-go criterion on its bad side."""
    for loc, _stage, no_go, criterion in ctx.criteria():
        metric = ctx.metrics.get(criterion.metric or "")
        threshold = criterion.threshold
        if metric is None or threshold is None or metric.direction is None:
            continue
        bad_side = threshold.op in _BAD_SIDE[metric.direction]
        good_side = threshold.op in _GOOD_SIDE[metric.direction]
        if no_go and good_side:
            yield _Problem(
                (*loc, "threshold"),
                f"'{threshold}' holds when {metric.id!r} is good ({metric.direction.value} is better); "
                "a no-go criterion holds on the bad side",
            )
        elif not no_go and bad_side:
            yield _Problem(
                (*loc, "threshold"),
                f"'{threshold}' holds when {metric.id!r} is bad ({metric.direction.value} is better); "
                "a go criterion holds on the good side",
            )


def _trigger_metrics_defined(ctx: _Context) -> Iterator[_Problem]:
    for index, trigger in enumerate(ctx.plan.triggers):
        if trigger.metric not in ctx.metrics:
            yield _unknown_metric(trigger.metric, ("triggers", index, "metric"))


def _triggers_on_the_bad_side(ctx: _Context) -> Iterator[_Problem]:
    for index, trigger in enumerate(ctx.plan.triggers):
        metric = ctx.metrics.get(trigger.metric)
        direction = metric.direction if metric is not None else None
        if direction is not None and trigger.threshold.op in _GOOD_SIDE[direction]:
            yield _Problem(
                ("triggers", index, "threshold"),
                f"'{trigger.threshold}' fires when {trigger.metric!r} is good "
                f"({direction.value} is better); a rollback trigger fires on the bad side",
            )


def _unique_trigger_ids(ctx: _Context) -> Iterator[_Problem]:
    seen: set[str] = set()
    for index, trigger in enumerate(ctx.plan.triggers):
        if trigger.id in seen:
            yield _Problem(("triggers", index, "id"), f"duplicate trigger id {trigger.id!r}")
        seen.add(trigger.id)


def _same_features_everywhere(ctx: _Context) -> Iterator[_Problem]:
    """A feature flag the infra sets in one stage but not the next would silently keep its old state."""
    feature_names = [set(stage.features) for stage in ctx.plan.stages]
    every_name = set().union(*feature_names) if feature_names else set()
    for index, names in enumerate(feature_names):
        missing = sorted(every_name - names)
        if names and missing:
            yield _Problem(
                ("stages", index, "features"),
                f"lists no state for {', '.join(missing)} (every stage names the same features)",
            )


def _stable_features_named_by_stages(ctx: _Context) -> Iterator[_Problem]:
    """A rolled-back stack's flags name only features the stages have (a typo would be a new flag)."""
    if not ctx.plan.stages:
        return  # "a plan needs at least one stage" says what is wrong
    every_name = {name for stage in ctx.plan.stages for name in stage.features}
    for name in ctx.plan.stable_features:
        if name not in every_name:
            yield _Problem(
                ("stable_features", name),
                f"{name!r} is not a feature any stage names ({', '.join(sorted(every_name)) or 'none'})",
            )


def _primary_region_listed(ctx: _Context) -> Iterator[_Problem]:
    dr = ctx.plan.objectives.disaster_recovery
    if dr.primary not in dr.regions:
        yield _Problem(
            ("objectives", "disaster_recovery", "primary"),
            f"primary region {dr.primary!r} is not one of the regions ({', '.join(dr.regions)})",
        )


_GOOD_SIDE = {Direction.LOWER_IS_BETTER: (Op.LT, Op.LE), Direction.HIGHER_IS_BETTER: (Op.GT, Op.GE)}
_BAD_SIDE = {Direction.LOWER_IS_BETTER: (Op.GT, Op.GE), Direction.HIGHER_IS_BETTER: (Op.LT, Op.LE)}

# Every cross-field rule, in the order their problems are counted (the first by line is reported).
_RULES: tuple[Callable[[_Context], Iterator[_Problem]], ...] = (
    _unique_metric_ids,
    _known_providers,
    _gate_metrics_defined,
    _gate_comparisons_fit,
    _gates_have_targets,
    _gate_thresholds_match_direction,
    _thresholds_within_range,
    _at_least_one_stage,
    _unique_stage_ids,
    _stages_have_steps,
    _weights_increase,
    _last_stage_serves_everyone,
    _steps_fit_min_duration,
    _comparisons_are_like_for_like,
    _audience_splits_add_up,
    _unique_criterion_ids,
    _criteria_complete,
    _criteria_on_the_right_side,
    _trigger_metrics_defined,
    _triggers_on_the_bad_side,
    _unique_trigger_ids,
    _same_features_everywhere,
    _stable_features_named_by_stages,
    _primary_region_listed,
)


def _table_index(data: Mapping[str, Any], name: str, fallback: int) -> int:
    """The table's position in the file (tables are deduplicated by name before this pass)."""
    raw = data.get("tables") or []
    for index, table in enumerate(raw):
        if isinstance(table, Mapping) and table.get("name") == name:
            return index
    return fallback


def _like_for_like_problem(stage: Stage, sloc: Loc) -> _Problem | None:
    """A stage that keeps segments from the candidate must filter the baseline to the same users.

    The comparison assumes both versions serve alike users; with VIPs excluded from the candidate,
    the stable version's counts would include users the candidate never sees. Only comparisons with
    live queries can be checked (a metrics file's counts are the team's to filter).
    """
    excluded = stage.audience.exclude_segments
    if not excluded or not any(0 < step.weight < 100 for step in stage.steps):
        return None
    for table in stage.tables:
        for gate in table.gates:
            c = gate.comparison
            if c is not None and c.live_queries and c.segment_label is None:
                return _Problem(
                    (*sloc, "audience", "exclude_segments"),
                    f"the candidate does not serve {', '.join(excluded)}, so the comparison of "
                    f"{gate.metric!r} (table {table.name!r}) cannot be like-for-like: give it "
                    "segment_label and group its queries by that label",
                )
    return None


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
        # At the same number, a value can both meet an inclusive target and be beyond an inclusive
        # alert ("<= 2" and ">= 2"): the gate would roll back on a value it calls good.
        both_inclusive = target.op in (Op.LE, Op.GE) and alert.op in (Op.LE, Op.GE)
        if wrong:
            relation = "at or above" if better == "lower" else "at or below"
            yield _Problem(
                (*loc, "alert"),
                f"'{alert}' must sit {relation} the target '{target}' ({better} is better)",
            )
        elif alert.value == target.value and both_inclusive:
            yield _Problem(
                (*loc, "alert"),
                f"'{alert}' overlaps the target '{target}': {alert.value:g} would both meet the target "
                "and be beyond the alert",
            )


def _criterion_problems(
    criterion: Criterion,
    loc: Loc,
    stage_tables: set[str],
    authority: set[str],
    metrics: Mapping[str, Metric],
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
        elif criterion.metric not in metrics:
            yield _unknown_metric(criterion.metric, (*loc, "metric"))
        if criterion.threshold is None:
            yield _Problem(loc, f"a {kind.value} criterion needs a threshold")
        if kind is CriterionKind.WINDOW and not criterion.window:
            yield _Problem(loc, "a window criterion needs a window longer than zero (such as 48h)")
    elif kind is CriterionKind.DRILL:
        if criterion.drill not in DRILLS:
            yield _Problem(
                (*loc, "drill"),
                f"a drill criterion names one of the drills ({', '.join(DRILLS)}), got {criterion.drill!r}",
            )
        if not criterion.window:
            yield _Problem(
                loc, "a drill criterion needs a window: how recent the passed drill must be (such as 14d)"
            )
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
