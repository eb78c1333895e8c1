"""Hostile plans made by mutating the shipped plan: each row breaks one meaning and expects one line.

Each row loads ``rollout_policies/plans/markethub-mobile.yaml`` with ruamel's round-trip loader,
changes one thing (a value, an id, a threshold in its string or mapping form, a stage), writes the
result and expects exactly ``FILE:LINE: field: problem``. The line is where the changed key sits in
the written file, found from the round-trip data, so the rows keep up when the shipped plan changes.
A sample of rows also runs through the real ``rollout plan validate`` and must exit 2 with that line.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from rollout_policies.plan.loader import (
    DEFAULT_PLAN,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_PLAN_BYTES,
    PlanError,
    load_plan,
)

REPO = Path(__file__).resolve().parents[2]
Path_ = tuple[str | int, ...]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.width = 4096  # never fold a long line: line numbers must not move
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the shipped plan's layout
    return yaml


def dump(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


# The baseline is the shipped plan as the round-trip dumper writes it (two long flow mappings end up
# on one line each); every mutated file is written the same way, so a line here is a line there.
BASELINE = dump(_yaml().load(DEFAULT_PLAN.read_text(encoding="utf-8")))


def fresh() -> Any:
    return _yaml().load(BASELINE)


def line_of(data: Any, path: Path_) -> int:
    """1-based line of the deepest key or item of ``path`` present in round-trip data."""
    node, line = data, 1
    for part in path:
        if isinstance(node, dict) and part in node:
            line = node.lc.key(part)[0] + 1
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
        else:
            break
        node = node[part]
    return line


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --- finding things in the plan by id, so rows name stages and metrics, not positions --------------


def index_of(items: list[Any], key: str, value: str) -> int:
    return next(i for i, item in enumerate(items) if item[key] == value)


def stage(d: Any, sid: str) -> Path_:
    return ("stages", index_of(d["stages"], "id", sid))


def metric(d: Any, mid: str) -> Path_:
    return ("metrics", index_of(d["metrics"], "id", mid))


def gate(d: Any, table: str, mid: str) -> Path_:
    t = index_of(d["tables"], "name", table)
    return ("tables", t, "gates", index_of(d["tables"][t]["gates"], "metric", mid))


def trigger(d: Any, tid: str) -> Path_:
    return ("triggers", index_of(d["triggers"], "id", tid))


def criterion(d: Any, sid: str, group: str, cid: str) -> Path_:
    s = stage(d, sid)
    return (*s, group, index_of(d["stages"][s[1]][group], "id", cid))


def get(d: Any, path: Path_) -> Any:
    for part in path:
        d = d[part]
    return d


def flow(**items: Any) -> CommentedMap:
    """A mapping written inline (``{op: <, value: .nan}``), so it stays on its key's line."""
    mapping = CommentedMap(items)
    mapping.fa.set_flow_style()
    return mapping


def flow_list(*items: Any) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


# --- the rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """``where(d)`` is the changed node's path; ``value`` replaces it (or ``mutate`` changes ``d``)."""

    name: str
    where: Callable[[Any], Path_]
    problem: str
    value: Any = None
    mutate: Callable[[Any, Path_], None] | None = None
    field_suffix: str = ""  # the reported field, below the changed node (".value" of a threshold)
    cli: bool = False  # also run this row through `rollout plan validate`


def put(value: Any) -> Callable[[Any, Path_], None]:
    def change(d: Any, path: Path_) -> None:
        get(d, path[:-1])[path[-1]] = value

    return change


NAN, INF = float("nan"), float("inf")
SAFE = (
    "is not a safe id (lower-case letters, digits and dashes, at most 63, "
    "starting and ending with a letter or digit)"
)

ROWS: list[Row] = [
    # Every number is finite, in the string and the mapping form of a threshold alike.
    Row(
        "target mapping holds NaN",
        lambda d: (*gate(d, "Technical Metrics", "crash_rate"), "target"),
        "expected a finite number, got nan",
        flow(op="<", value=NAN),
        field_suffix=".value",
        cli=True,
    ),
    Row(
        "alert mapping holds infinity",
        lambda d: (*gate(d, "Technical Metrics", "memory_usage"), "alert"),
        "expected a finite number, got inf",
        flow(op=">", value=INF),
        field_suffix=".value",
    ),
    Row(
        "trigger mapping holds -infinity",
        lambda d: (*trigger(d, "crash-rate"), "threshold"),
        "expected a finite number, got -inf",
        flow(op=">", value=-INF),
        field_suffix=".value",
    ),
    Row(
        "criterion mapping holds NaN",
        lambda d: (*criterion(d, "beta", "go", "beta-nps"), "threshold"),
        "expected a finite number, got nan",
        flow(op=">", value=NAN),
        field_suffix=".value",
    ),
    Row(
        "comparison alpha is NaN",
        lambda d: (*gate(d, "Technical Metrics", "crash_rate"), "comparison", "alpha"),
        "expected a finite number, got nan",
        NAN,
    ),
    Row(
        "traffic weight is NaN",
        lambda d: (*stage(d, "limited"), "steps", 0, "weight"),
        "expected a finite number, got nan",
        NAN,
    ),
    Row(
        "platform split is infinite",
        lambda d: (*stage(d, "beta"), "audience", "platform_split", "ios"),
        "expected a finite number, got inf",
        INF,
    ),
    Row(
        "provider option is infinite",
        lambda d: (*metric(d, "lb_health"), "source", "options"),
        "period: expected a finite number, got inf",
        mutate=lambda d, p: get(d, p).__setitem__("period", INF),
    ),
    # Every duration is never negative, positive where zero means nothing, and at most a year.
    Row(
        "negative bake (a number)",
        lambda d: (*stage(d, "limited"), "steps", 0, "bake"),
        "a duration is never negative, got -5",
        -5,
        cli=True,
    ),
    Row(
        "negative max_age",
        lambda d: (*metric(d, "crash_rate"), "source", "max_age"),
        "a duration is never negative, got -60",
        -60,
    ),
    Row(
        "negative trigger window",
        lambda d: (*trigger(d, "api-error-rate"), "window"),
        "a duration is never negative, got -1",
        -1,
    ),
    Row(
        "negative RTO",
        lambda d: ("objectives", "disaster_recovery", "rto"),
        "a duration is never negative, got -1800",
        -1800,
        cli=True,
    ),
    Row(
        "zero RPO", lambda d: ("objectives", "disaster_recovery", "rpo"), "must be longer than zero, got 0", 0
    ),
    Row(
        "negative drill interval",
        lambda d: ("objectives", "disaster_recovery", "drill_every"),
        "a duration is never negative, got -604800",
        -604800,
    ),
    Row(
        "zero minimum duration",
        lambda d: (*stage(d, "medium"), "min_duration"),
        "must be longer than zero, got '0s'",
        "0s",
    ),
    Row(
        "negative evaluable_after",
        lambda d: (*metric(d, "user_adoption"), "evaluable_after"),
        "a duration is never negative, got -86400",
        -86400,
    ),
    Row(
        "infinite bake",
        lambda d: (*stage(d, "majority"), "steps", 0, "bake"),
        "inf is longer than a plan spans (at most 365d)",
        INF,
        cli=True,
    ),
    Row(
        "huge minimum duration",
        lambda d: (*stage(d, "full"), "min_duration"),
        "1e+308 is longer than a plan spans (at most 365d)",
        1e308,
    ),
    Row(
        "huge rollback objective in weeks",
        lambda d: (*stage(d, "limited"), "rollback_objective"),
        "'99999999999999999999w' is longer than a plan spans (at most 365d)",
        "99999999999999999999w",
    ),
    Row(
        "huge max_age as an integer",
        lambda d: (*metric(d, "nps"), "source", "max_age"),
        "1000000000000000000000000000000 is longer than a plan spans (at most 365d)",
        10**30,
    ),
    Row(
        "criterion window over a year",
        lambda d: (*criterion(d, "limited", "go", "limited-no-critical"), "window"),
        "'400d' is longer than a plan spans (at most 365d)",
        "400d",
    ),
    Row(
        "backup every zero",
        lambda d: ("objectives", "backups", 0, "every"),
        "must be longer than zero, got '0s'",
        "0s",
    ),
    Row(
        "comparison interval zero",
        lambda d: (*gate(d, "Infrastructure Metrics", "api_error_rate"), "comparison", "interval"),
        "must be longer than zero, got 0",
        0,
    ),
    # Thresholds sit on the right side for the metric's direction: gates, go, no-go and triggers.
    Row(
        "go criterion on the bad side",
        lambda d: (*criterion(d, "beta", "go", "beta-critical-bugs"), "threshold"),
        "'> 5' holds when 'critical_bugs' is bad (lower is better); a go criterion holds on the good side",
        "> 5",
        cli=True,
    ),
    Row(
        "go criterion on the bad side (higher)",
        lambda d: (*criterion(d, "beta", "go", "beta-nps"), "threshold"),
        "'< 7' holds when 'nps' is bad (higher is better); a go criterion holds on the good side",
        "< 7",
    ),
    Row(
        "no-go criterion on the good side",
        lambda d: (*criterion(d, "beta", "no_go", "beta-crash-rate"), "threshold"),
        "'< 2' holds when 'crash_rate' is good (lower is better); a no-go criterion holds on the bad side",
        "< 2",
    ),
    Row(
        "no-go criterion on the good side (mapping)",
        lambda d: (*criterion(d, "beta", "no_go", "beta-security"), "threshold"),
        "'<= 0' holds when 'critical_security_issues' is good (lower is better); a no-go criterion holds on "
        "the bad side",
        flow(op="<=", value=0),
    ),
    Row(
        "gate target the wrong way (mapping)",
        lambda d: (*gate(d, "Technical Metrics", "app_load_time"), "target"),
        "'> 3' is the wrong way round: lower is better, so a target uses < or <=",
        flow(op=">", value=3),
    ),
    Row(
        "gate alert on the good side of the target",
        lambda d: (*gate(d, "User Experience Metrics", "search_success"), "alert"),
        "'< 90' must sit at or below the target '> 85' (higher is better)",
        "< 90",
    ),
    Row(
        "inclusive target and alert overlap",
        lambda d: (*gate(d, "Technical Metrics", "battery_impact"), "alert"),
        "'>= 5' overlaps the target '<= 5': 5 would both meet the target and be beyond the alert",
        mutate=lambda d, p: get(d, p[:-1]).update(target="<= 5", alert=">= 5"),
    ),
    Row(
        "trigger on the good side (mapping)",
        lambda d: (*trigger(d, "crash-rate"), "threshold"),
        "'< 5' fires when 'crash_rate' is good (lower is better); a rollback trigger fires on the bad side",
        flow(op="<", value=5),
    ),
    # A threshold a valid reading can never meet, or always meets, judges nothing.
    Row(
        "trigger above 100%",
        lambda d: (*trigger(d, "crash-rate"), "threshold"),
        "'> 150' can never hold: crash_rate is always within 0..100 (a percentage)",
        "> 150",
        cli=True,
    ),
    Row(
        "go count below zero",
        lambda d: (*criterion(d, "beta", "go", "beta-critical-bugs"), "threshold"),
        "'< -5' can never hold: critical_bugs is always >= 0 (a count)",
        "< -5",
    ),
    Row(
        "trigger that always fires",
        lambda d: (*trigger(d, "api-error-rate"), "threshold"),
        "'> -1' holds for every value api_error_rate can take (always within 0..100 (a percentage)), so it "
        "judges nothing",
        "> -1",
    ),
    Row(
        "target above 100%",
        lambda d: (*gate(d, "User Experience Metrics", "search_success"), "target"),
        "'> 100' can never hold: search_success is always within 0..100 (a percentage)",
        "> 100",
    ),
    Row(
        "NPS target outside the plan's range",
        lambda d: (*gate(d, "Success Criteria", "nps"), "target"),
        "'> 12' can never hold: nps is always within 0..10 (the plan's range)",
        "> 12",
    ),
    Row(
        "range upside down",
        lambda d: (*metric(d, "nps"), "range"),
        "min (10) must be below max (0)",
        flow(min=10, max=0),
    ),
    # Audience sizes and splits in range; weights and sizes are numbers, never booleans.
    Row(
        "negative audience size",
        lambda d: (*stage(d, "limited"), "audience", "size"),
        "Input should be greater than or equal to 1",
        -1000,
        cli=True,
    ),
    Row(
        "audience size is a boolean",
        lambda d: (*stage(d, "beta"), "audience", "size"),
        "expected a number, got a boolean (true)",
        True,
    ),
    Row(
        "audience larger than the planet",
        lambda d: (*stage(d, "full"), "audience", "size"),
        "Input should be less than or equal to 10000000000",
        10**12,
    ),
    Row(
        "negative platform share",
        lambda d: (*stage(d, "beta"), "audience", "platform_split"),
        "Input should be greater than or equal to 0",
        flow(ios=-10, android=100),
        field_suffix=".ios",
    ),
    Row(
        "platform split over 100",
        lambda d: (*stage(d, "limited"), "audience", "platform_split"),
        "ios and android must add up to 100, not 110",
        flow(ios=70, android=40),
    ),
    Row(
        "negative new share",
        lambda d: (*stage(d, "limited"), "audience", "new_vs_existing"),
        "Input should be greater than or equal to 0",
        flow_list(-20, 100),
        field_suffix="[0]",
    ),
    Row(
        "new and existing over 100",
        lambda d: (*stage(d, "limited"), "audience", "new_vs_existing"),
        "new and existing must add up to 100, not 110",
        flow_list(80, 30),
    ),
    Row(
        "weight is a boolean",
        lambda d: (*stage(d, "medium"), "steps", 0, "weight"),
        "expected a number, got a boolean (true)",
        True,
        cli=True,
    ),
    Row(
        "platform share is a boolean",
        lambda d: (*stage(d, "beta"), "audience", "platform_split", "android"),
        "expected a number, got a boolean (false)",
        False,
    ),
    # Ids are safe names.
    Row(
        "stage id with a slash and dots",
        lambda d: (*stage(d, "limited"), "id"),
        f"'../limited' {SAFE}",
        "../limited",
        cli=True,
    ),
    Row("stage id is dots", lambda d: (*stage(d, "medium"), "id"), f"'..' {SAFE}", ".."),
    Row("stage id holds NUL", lambda d: (*stage(d, "beta"), "id"), f"'be\\x00ta' {SAFE}", "be\0ta"),
    Row(
        "trigger id with spaces",
        lambda d: (*trigger(d, "crash-rate"), "id"),
        f"'Crash Rate' {SAFE}",
        "Crash Rate",
    ),
    Row(
        "criterion id with a slash",
        lambda d: (*criterion(d, "beta", "go", "beta-nps"), "id"),
        f"'beta/nps' {SAFE}",
        "beta/nps",
    ),
    Row(
        "metric id with a path",
        lambda d: (*metric(d, "chat_usage"), "id"),
        "'chat/../usage' is not a safe metric id (a lower-case letter, then lower-case letters, digits and "
        "underscores, at most 63)",
        "chat/../usage",
    ),
    # At least one stage, and the last serves everyone.
    Row("no stages", lambda d: ("stages",), "a plan needs at least one stage", flow_list(), cli=True),
    Row(
        "last stage stops at 50%",
        lambda d: (*stage(d, "majority"), "steps", 0, "weight"),
        "the last stage must end at weight 100 (the whole audience), not 50",
        mutate=lambda d, p: d["stages"].pop(),
    ),
    Row(
        "a stage with no steps",
        lambda d: (*stage(d, "medium"), "steps"),
        "a stage needs at least one traffic step",
        flow_list(),
    ),
    Row(
        "a number with 200 digits",
        lambda d: (*stage(d, "medium"), "audience", "size"),
        "a number of 200 digits (at most 100)",
        10**199,
    ),
]


def written(tmp_path: Path, row: Row) -> tuple[Path, int, str]:
    """Apply the row to a fresh plan; the file, the expected line, and the expected field."""
    data = fresh()
    path = row.where(data)
    line = line_of(data, path)
    if row.mutate is not None:
        row.mutate(data, path)
    else:
        put(row.value)(data, path)
    text = dump(data)
    file = tmp_path / f"{re.sub(r'[^a-z0-9]+', '-', row.name.lower())}.yaml"
    file.write_text(text, encoding="utf-8")
    # The change kept the lines above it where they were: the expected line is still that key's.
    key = path[-1] if isinstance(path[-1], str) else None
    if key is not None:
        assert f"{key}:" in text.splitlines()[line - 1], (row.name, line, text.splitlines()[line - 1])
    return file, line, dotted(path) + row.field_suffix


def test_enough_rows() -> None:
    assert len(ROWS) >= 40
    assert len({row.name for row in ROWS}) == len(ROWS)


def test_baseline_loads() -> None:
    """The shipped plan, and its round-trip rewrite every row starts from, are valid."""
    load_plan(DEFAULT_PLAN)
    assert BASELINE.count("\n") >= DEFAULT_PLAN.read_text(encoding="utf-8").count("\n") - 5


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_mutation_is_one_line(tmp_path: Path, row: Row) -> None:
    file, line, field = written(tmp_path, row)
    with pytest.raises(PlanError) as caught:
        load_plan(file)
    assert str(caught.value) == f"{file}:{line}: {field}: {row.problem}"


def run_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", "plan", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


CLI_ROWS = [row for row in ROWS if row.cli]


@pytest.mark.parametrize("row", CLI_ROWS, ids=[row.name for row in CLI_ROWS])
def test_cli_validate_exits_2_with_the_line(tmp_path: Path, row: Row) -> None:
    file, line, field = written(tmp_path, row)
    result = run_validate(file)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"rollout: error: {file}:{line}: {field}: {row.problem}"]


# --- structure: bounded before parsing ---------------------------------------------------------------


def text_line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path: Path) -> None:
    needle = "- Active users (>5 orders in last 3 months)"
    line = text_line(BASELINE, needle)
    deep = BASELINE.replace(needle, "- " + "[" * 100_000 + "]" * 100_000)
    file = tmp_path / "deep.yaml"
    file.write_text(deep, encoding="utf-8")
    with pytest.raises(PlanError) as caught:
        load_plan(file)
    where = "stages[0].audience.criteria[0]" + "[0]" * (MAX_DEPTH - 5)
    assert str(caught.value) == f"{file}:{line}: {where}: nested more than {MAX_DEPTH} levels deep"


BOMB = ["  l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
BOMB += [f"  l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, 9)]


@pytest.mark.parametrize(
    "before",
    ["", "quirk: {b:c}\n"],
    ids=["plain", "behind what libyaml refuses (the pure parser's walk catches it)"],
)
def test_billion_laughs_is_one_line(tmp_path: Path, before: str) -> None:
    text = BASELINE + before + "bomb:\n" + "\n".join(BOMB) + "\n"
    file = tmp_path / "bomb.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as caught:
        load_plan(file)
    # l5 is the first level whose expansion (1,111,111 values) passes the bound.
    assert str(caught.value) == (
        f"{file}:{text_line(text, '  l5: ')}: bomb.l5[0]: "
        "more than 200000 values once aliases are expanded (a YAML bomb?)"
    )


def test_too_many_aliases_is_one_line(tmp_path: Path) -> None:
    existing = len(re.findall(r"[:-] \*\w+", BASELINE))
    text = BASELINE + "notes:\n  one: &one x\n  many: [" + ", ".join(["*one"] * (MAX_ALIASES + 5)) + "]\n"
    file = tmp_path / "aliases.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as caught:
        load_plan(file)
    first_over = MAX_ALIASES - existing  # the index of the alias that passes the bound
    assert str(caught.value) == (
        f"{file}:{text_line(text, '  many: ')}: notes.many[{first_over}]: "
        f"more than {MAX_ALIASES} aliases in one plan"
    )


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    file = tmp_path / "big.yaml"
    file.write_text(BASELINE + "#" * MAX_PLAN_BYTES + "\n", encoding="utf-8")
    size = file.stat().st_size
    with pytest.raises(PlanError) as caught:
        load_plan(file)
    assert (
        str(caught.value)
        == f"{file}: {size} bytes is more than a plan file may hold ({MAX_PLAN_BYTES} bytes)"
    )


def test_bad_timestamp_is_one_line(tmp_path: Path) -> None:
    needle = "min_duration: 2w # Week 1-2"
    text = BASELINE.replace(needle, "min_duration: 2026-13-45 # Week 1-2")
    file = tmp_path / "date.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as caught:
        load_plan(file)
    assert str(caught.value) == (
        f"{file}:{text_line(text, '2026-13-45')}: stages[0].min_duration: "
        "not a value YAML can read: month must be in 1..12"
    )


def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "plan.yaml"
    os.mkfifo(fifo)
    result = run_validate(fifo)  # a blocking open would hang here until the timeout
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"rollout: error: {fifo}: is a named pipe, not a plan file"]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/dev/null", "is a character device, not a plan file"),
        ("/dev/zero", "is a character device, not a plan file"),
    ],
)
def test_device_is_refused(path: str, problem: str) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert str(caught.value) == f"{path}: {problem}"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(tmp_path)
    assert str(caught.value) == f"{tmp_path}: is a directory, not a plan file"


def test_anchored_boolean_weight_is_still_a_boolean(tmp_path: Path) -> None:
    """ruamel builds an anchored ``true`` as an int subclass; it is still no weight."""
    needle = "- {weight: 30, bake: 2w}"
    text = BASELINE.replace(needle, "- {weight: &on true, bake: 2w}")
    file = tmp_path / "anchored.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as caught:
        load_plan(file)
    medium = index_of(fresh()["stages"], "id", "medium")
    assert str(caught.value) == (
        f"{file}:{text_line(text, '&on true')}: stages[{medium}].steps[0].weight: "
        "expected a number, got a boolean (true)"
    )
