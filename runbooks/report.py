"""Drill reports: the steps a drill ran, their timings, the objectives met or missed, as JSON and Markdown.

A drill records each step through a ``DrillRecorder``; the finished ``DrillReport`` is immutable and is
written as ``<stamp>.json`` and ``<stamp>.md`` under ``drills/<drill>/``, optionally committed to git so
the drill history lives beside the rollout's own history.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from rollout_policies import envvars
from rollout_policies.errors import UserError


@dataclass(frozen=True)
class Step:
    """A step a drill can run: its name (as the runbook page names it), what it does, what it changes."""

    name: str
    does: str
    changes: str = ""  # empty for read-only steps


class StepStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not configured here (e.g. no cluster): reported, never counted as passed
    PLANNED = "planned"  # a dry run: what the step would change
    INCONCLUSIVE = "inconclusive"  # ran, but got no answer within its bound


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    DRY_RUN = "dry-run"


# Exit statuses of `rollout drill ...` (2 is taken by bad input, see rollout_policies.errors).
EXIT_CODES = {Verdict.PASSED: 0, Verdict.DRY_RUN: 0, Verdict.FAILED: 1, Verdict.INCONCLUSIVE: 3}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepRecord(_Frozen):
    name: str
    status: StepStatus
    started_at: datetime
    seconds: float
    detail: str = ""
    changes: str = ""  # what the step changes outside the drill (DNS records, databases, ...)


class ObjectiveRecord(_Frozen):
    """A measured figure against its objective, e.g. restore time against the plan's RTO."""

    name: str  # RTO, RPO, time to recovery
    limit_seconds: float
    measured_seconds: float | None  # None: not measured (the drill stopped before it)

    @property
    def met(self) -> bool | None:
        if self.measured_seconds is None:
            return None
        return self.measured_seconds <= self.limit_seconds


class DrillReport(_Frozen):
    drill: str  # region-failover, backup-restore
    executed: bool
    started_at: datetime
    finished_at: datetime
    steps: tuple[StepRecord, ...]
    objectives: tuple[ObjectiveRecord, ...]
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> Verdict:
        statuses = {step.status for step in self.steps}
        if StepStatus.FAILED in statuses or any(o.met is False for o in self.objectives):
            return Verdict.FAILED
        if not self.executed:
            return Verdict.DRY_RUN
        if StepStatus.INCONCLUSIVE in statuses or any(o.met is None for o in self.objectives):
            return Verdict.INCONCLUSIVE
        return Verdict.PASSED

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def step(self, name: str) -> StepRecord:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def objective(self, name: str) -> ObjectiveRecord:
        for objective in self.objectives:
            if objective.name == name:
                return objective
        raise KeyError(name)

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        data["verdict"] = self.verdict.value
        for objective, dumped in zip(self.objectives, data["objectives"], strict=True):
            dumped["met"] = objective.met
        return json.dumps(data, indent=2) + "\n"

    def to_markdown(self) -> str:
        lines = [
            f"# Drill report: {self.drill}",
            "",
            f"- verdict: **{self.verdict.value}**",
            f"- mode: {'executed' if self.executed else 'dry run (nothing changed)'}",
            f"- started: {_iso(self.started_at)}",
            f"- finished: {_iso(self.finished_at)}",
            "",
            "## Objectives",
            "",
            "| objective | limit | measured | met |",
            "| --- | --- | --- | --- |",
        ]
        for objective in self.objectives:
            measured = (
                "not measured" if objective.measured_seconds is None else _secs(objective.measured_seconds)
            )
            met = {True: "yes", False: "**MISSED**", None: "unknown"}[objective.met]
            lines.append(f"| {objective.name} | {_secs(objective.limit_seconds)} | {measured} | {met} |")
        lines += [
            "",
            "## Steps",
            "",
            "| step | status | time | detail | changes |",
            "| --- | --- | --- | --- | --- |",
        ]
        for step in self.steps:
            lines.append(
                f"| {step.name} | {step.status.value} | {_secs(step.seconds)} | {_cell(step.detail)} "
                f"| {_cell(step.changes)} |"
            )
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _secs(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


class StepFailed(Exception):
    """Raised inside a step to fail it with a message; the drill stops (after its safety steps)."""


class StepInconclusive(Exception):
    """Raised inside a step that got no answer within its bound."""


class StepSkipped(Exception):
    """Raised inside a step that cannot run here (not configured); it is reported as skipped."""


@dataclass
class StepHandle:
    """What a running step may set: a detail line for the report."""

    detail: str = ""


@dataclass
class DrillRecorder:
    """Collects step records as a drill runs. Time comes in: ``now`` (wall clock) and ``monotonic``."""

    drill: str
    executed: bool
    now: Callable[[], datetime]
    monotonic: Callable[[], float] = time.monotonic
    known_steps: frozenset[str] = frozenset()
    steps: list[StepRecord] = field(default_factory=list)
    objectives: list[ObjectiveRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started_at: datetime | None = None

    def __post_init__(self) -> None:
        self.started_at = self.now()

    @contextmanager
    def step(self, name: str, changes: str = "") -> Iterator[StepHandle]:
        """Run one step. ``StepFailed`` and any other error fail it and propagate as ``StepFailed``."""
        if self.known_steps and name not in self.known_steps:
            raise ValueError(f"step {name!r} is not in the drill's step list (update the runbook page too)")
        handle = StepHandle()
        started_at, started = self.now(), self.monotonic()
        status = StepStatus.PASSED
        try:
            yield handle
        except StepSkipped as err:
            status, handle.detail = StepStatus.SKIPPED, str(err)
        except StepInconclusive as err:
            status, handle.detail = StepStatus.INCONCLUSIVE, str(err)
        except (StepFailed, UserError) as err:
            status, handle.detail = StepStatus.FAILED, str(err)
            raise
        except Exception as err:
            status, handle.detail = StepStatus.FAILED, f"{type(err).__name__}: {err}"
            raise StepFailed(handle.detail) from err
        finally:
            self.steps.append(
                StepRecord(
                    name=name,
                    status=status,
                    started_at=started_at,
                    seconds=max(0.0, self.monotonic() - started),
                    detail=handle.detail,
                    changes=changes,
                )
            )

    def planned(self, name: str, changes: str) -> None:
        """A dry run's record of a step that would change something."""
        if self.known_steps and name not in self.known_steps:
            raise ValueError(f"step {name!r} is not in the drill's step list")
        self.steps.append(
            StepRecord(
                name=name, status=StepStatus.PLANNED, started_at=self.now(), seconds=0.0, changes=changes
            )
        )

    def objective(self, name: str, limit_seconds: float, measured_seconds: float | None) -> None:
        self.objectives.append(
            ObjectiveRecord(name=name, limit_seconds=limit_seconds, measured_seconds=measured_seconds)
        )

    def finish(self) -> DrillReport:
        assert self.started_at is not None
        return DrillReport(
            drill=self.drill,
            executed=self.executed,
            started_at=self.started_at,
            finished_at=self.now(),
            steps=tuple(self.steps),
            objectives=tuple(self.objectives),
            notes=tuple(self.notes),
        )


def utc_now() -> datetime:
    return datetime.now(UTC)


def write_report(report: DrillReport, report_dir: Path) -> tuple[Path, Path]:
    """Write ``<report_dir>/<drill>/<stamp>.json`` and ``.md``; both or neither."""
    folder = report_dir / report.drill
    folder.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path, md_path = folder / f"{stamp}.json", folder / f"{stamp}.md"
    # Write to temporary names first so a failure leaves no half-written report.
    staged = [(json_path, report.to_json()), (md_path, report.to_markdown())]
    temps = []
    try:
        for path, text in staged:
            temp = path.with_name(path.name + ".tmp")
            temp.write_text(text, encoding="utf-8")
            temps.append((temp, path))
        for temp, path in temps:
            temp.replace(path)
    finally:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
    return json_path, md_path


def commit_report(paths: tuple[Path, ...], message: str) -> str:
    """Commit the report files (only them) in the git repository that holds them; returns the commit id."""
    repo = _git_root(paths[0].parent)
    relative = [str(path.resolve().relative_to(repo)) for path in paths]
    _git(repo, "add", "--", *relative)
    _git(repo, "commit", "-q", "-m", message, "--", *relative)
    return _git(repo, "rev-parse", "HEAD").strip()


# Where reports live in the rollout repository; `git log -- reports/drills` is the drill history.
REPORTS_PATH = "reports/drills"
PUSH_ATTEMPTS = 4


def push_report(
    paths: tuple[Path, ...], drill: str, url: str, message: str, *, branch: str = "main", token: str = ""
) -> str:
    """Commit the report files under ``reports/drills/<drill>/`` of the repository at ``url`` and push
    them to ``branch``; returns the commit id.

    Works from anywhere (a CronJob's pod has no checkout): a shallow clone in a temporary folder,
    one commit holding only the report, a plain push. Another push landing first (a rollback, the
    other drill) is not an error: fetch, put the commit on top again, retry.
    """
    import tempfile

    env: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0"}
    config: list[str] = []
    if token and url.startswith("https://"):
        # The token goes in through a credential helper reading the environment: never in the URL,
        # the process list or an error message.
        config = [
            "-c",
            f"credential.helper=!f() {{ echo username={envvars.DEFAULT_GIT_USERNAME}; "
            f"echo password=${envvars.GIT_TOKEN}; }}; f",
        ]
        env[envvars.GIT_TOKEN] = token
    with tempfile.TemporaryDirectory(prefix="drill-report-") as scratch:
        clone = Path(scratch) / "repo"
        _git_env(
            Path(scratch), env, *config, "clone", "-q", "--depth", "1", "--branch", branch, url, str(clone)
        )
        target = clone / REPORTS_PATH / drill
        target.mkdir(parents=True, exist_ok=True)
        for path in paths:
            (target / path.name).write_bytes(path.read_bytes())
        _git_env(clone, env, "add", "--", f"{REPORTS_PATH}/{drill}")
        _git_env(clone, env, "-c", "user.name=markethub-rollout drill", "-c",
                 "user.email=rollout-drills@markethub.invalid", "commit", "-q", "-m", message)  # fmt: skip
        for attempt in range(PUSH_ATTEMPTS):
            try:
                _git_env(clone, env, *config, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
                break
            except UserError:
                if attempt == PUSH_ATTEMPTS - 1:
                    raise
                _git_env(clone, env, *config, "fetch", "-q", "--depth", "1", "origin", branch)
                _git_env(clone, env, "rebase", "-q", "FETCH_HEAD")
        return _git(clone, "rev-parse", "HEAD").strip()


def _git_env(cwd: Path, env: dict[str, str], *args: str) -> str:
    import os

    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, env={**os.environ, **env}
    )
    if result.returncode != 0:
        verb = next((a for a in args if not a.startswith("-") and "=" not in a), "git")
        raise UserError(f"git {verb}: {(result.stderr.strip() or result.stdout.strip())[-300:]}")
    return result.stdout


def _git_root(folder: Path) -> Path:
    try:
        return Path(_git(folder, "rev-parse", "--show-toplevel").strip()).resolve()
    except UserError as err:
        raise UserError(f"--commit: {folder} is not inside a git repository") from err


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserError(f"git {args[0]} in {cwd}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout
