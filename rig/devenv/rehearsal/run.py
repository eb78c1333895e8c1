"""The dress rehearsal: the whole plan, beta to 100% in both regions, hands-off, on the local environment.

Nothing here decides or moves traffic. The rehearsal plays the world and GitHub:

- the world: per region, blue and green versions of the service and their users (the simulator),
  reading the live HTTPRoute; the data every provider reads (``world``); faults, when due;
- GitHub: the scheduled promotion (the ``rollout-promote.yml`` step as written, every interval),
  a reviewer who checks the sign-off file's boxes and merges the promotion's pull request, and the
  on-push ``rollout-up.yml`` run for every push to main, whoever pushed (a merge, the controller).

After every step it checks that git and the live clusters agree (weights, cohort rule, flags), and
it records everything for the report.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from devenv.local import EnvInfo
from devenv.rehearsal import wiring
from devenv.rehearsal.faults import Fault, FaultRecord
from devenv.rehearsal.repository import Repository, git, matches_paths
from devenv.rehearsal.scale import Scales, scale_plan_text
from rollout_policies.errors import UserError
from rollout_policies.plan.loader import load_plan
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour, RolloutState

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = ".github/workflows"
PROMOTE_WORKFLOW = "rollout-promote.yml"
UP_WORKFLOW = "rollout-up.yml"
PLAN_IN_REPO = "rollout_policies/plans/markethub-mobile.yaml"
STACKS = {"local-us-east-1": "us-east-1", "local-us-west-2": "us-west-2"}
NAMESPACE = "markethub"
FORGE_REPO, FORGE_TOKEN = "markethub/rollout", "rehearsal-token"


class RehearsalFailed(UserError):
    """The rehearsal ran and the rollout did not do what the plan says; the report says why."""


@dataclass(frozen=True)
class Options:
    plan: Path
    scales: Scales
    report_dir: Path
    faults: tuple[Fault, ...] = ()
    interval: float = 4.0  # wall seconds between scheduled promotions
    sessions_per_second: float = 12.0
    population: int = 2000
    cohort_size: int = 50
    deadline_factor: float = 2.5  # give up after this many times the plan's scaled length
    signoff_file: Path | None = None
    keep: bool = False
    # The project tree the rehearsal's repository starts from (tests put a wiring fault back in a copy).
    source: Path = ROOT
    # Rehearsal faults that last the whole run (tests of the failure report): sources answering nothing,
    # and a controller whose apply cannot run.
    silent_sources: tuple[str, ...] = ()
    break_apply: bool = False


@dataclass
class Event:
    """One thing that happened, at a wall time and the rehearsal's calendar time."""

    at: float  # wall seconds since the start
    calendar_days: float
    kind: str  # promote-run, pull-request, merge, up, rollback, fault, check, hold, ...
    stack: str
    detail: str
    commit: str = ""
    pull: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Record:
    """Everything the report shows."""

    started_at: datetime
    scales: Scales
    interval: float
    cron_interval: float
    events: list[Event] = field(default_factory=list)
    weights: list[dict[str, Any]] = field(default_factory=list)  # {t, stack, live, git}
    evidence: list[dict[str, Any]] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # stack -> stage entries
    drills: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    verdict: str = ""
    wall_seconds: float = 0.0


class Rehearsal:
    """One rehearsal run on a running local environment."""

    def __init__(self, info: EnvInfo, options: Options, out: TextIO | None = None) -> None:
        self.info = info
        self.options = options
        self.out = out or sys.stdout
        # Each run keeps its own files (repository, logs, workflow runs) beside the report.
        self.run_dir = options.report_dir / time.strftime("run-%Y%m%dT%H%M%S", time.gmtime())
        self.backend = self.run_dir / "pulumi-backend"
        self.plan: Plan = load_plan(options.plan)
        self.scales = options.scales
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.cron = wiring.cron_interval_seconds(options.source / WORKFLOWS / PROMOTE_WORKFLOW)
        self.record = Record(datetime.now(UTC), self.scales, options.interval, self.cron)
        self.last_main = ""
        self.rollout_t0 = 0.0  # wall seconds since the start at which beta went live (the calendar's zero)
        self.pulls_seen: set[int] = set()
        self.last_promotion = ""
        self.progress: dict[str, tuple[tuple[str, int, int], float]] = {}

    # -- time -------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def calendar_days(self) -> float:
        """Calendar days since the rollout began (negative during setup)."""
        return (self.elapsed() - self.rollout_t0) * self.scales.calendar / 86400

    def say(self, text: str) -> None:
        days = self.calendar_days()
        print(f"[{self.elapsed():6.1f}s | day {days:5.1f}] {text}", file=self.out, flush=True)

    def event(self, kind: str, stack: str, detail: str, **extra: Any) -> Event:
        item = Event(self.elapsed(), self.calendar_days(), kind, stack, detail, **extra)
        with self._lock:
            self.record.events.append(item)
        self.say(f"{kind:<12} {stack or '-':<16} {detail}")
        return item

    # -- setup ------------------------------------------------------------------------------------
    def prepare_repository(self) -> Repository:
        """This project's HEAD on a bare remote, with the plan at the rehearsal's scales, the rehearsed
        stacks only, each pointed at its region's cluster, at the beta stage from now."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        repo = Repository.create(self.options.source, self.run_dir)
        work = repo.work
        (work / PLAN_IN_REPO).write_text(scale_plan_text(self.options.plan.read_text(), self.scales))
        for other in work.glob("Pulumi.*.yaml"):
            if other.name.removeprefix("Pulumi.").removesuffix(".yaml") not in STACKS:
                other.unlink()  # a replica holds the stacks it rehearses, no production stacks
        now = datetime.now(UTC).replace(microsecond=0)
        self.beta_start = now
        for stack, region in STACKS.items():
            _start_at_beta(work / f"Pulumi.{stack}.yaml", now, self.info.kubeconfig(region))
            settings = self.world.controller_settings(repo.remote, FORGE_REPO, self.forge_url)
            _controller_on(work / f"Pulumi.{stack}.yaml", settings)
        self.init_stacks(work)
        self.world.create_cluster_secrets(self.backend.as_uri(), FORGE_TOKEN)
        commit = repo.commit_all(
            f"rehearsal: plan at 1/{self.scales.calendar:g} calendar and 1/{self.scales.response:g} response"
            " time; the rehearsed stacks at beta, on the local clusters, with their controllers on"
        )
        self.base_commit = git(repo.remote, "rev-parse", "main~1")
        self.event("setup", "", f"repository {repo.remote} at {commit[:8]}", commit=commit)
        return repo

    def pulumi_env(self) -> dict[str, str]:
        """The run's own Pulumi backend (fresh stacks each run), the environment's passphrase, the CLI."""
        from devenv.tools import tool

        return {
            "PULUMI_BACKEND_URL": self.backend.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": self.info.pulumi_passphrase,
            "PULUMI_HOME": self.info.pulumi_home,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "ROLLOUT_PULUMI": str(tool("pulumi")),
            "PATH": os.pathsep.join([str(tool("pulumi").parent), os.environ.get("PATH", "")]),
        }

    def init_stacks(self, work: Path) -> None:
        """``pulumi stack init`` of each stack, once, as a team does: it writes the stack's encryption salt
        into its config, which the setup commit carries. Leftovers of an earlier run are removed first."""
        from rollout_policies.gitops.seams import AutomationApplier

        self.backend.mkdir(parents=True, exist_ok=True)
        for region in STACKS.values():
            _delete_namespace(self.info.kubeconfig(region), NAMESPACE)
        env = {**os.environ, **self.pulumi_env()}
        applier = AutomationApplier(work, lambda stack: env)
        for stack in STACKS:
            applier.stack(stack)

    def destroy(self) -> None:
        """Take the rehearsal's deployments down (the clusters keep running), unless --keep."""
        from rollout_policies.gitops.seams import AutomationApplier

        env = {**os.environ, **self.pulumi_env()}
        applier = AutomationApplier(self.repo.work, lambda stack: env)
        git(self.repo.work, "pull", "-q", "--ff-only", "origin", "main")
        threads = []
        for stack in STACKS:

            def down(name: str = stack) -> None:
                with contextlib.suppress(Exception):
                    applier.stack(name).destroy(color="never")

            thread = threading.Thread(target=down)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(timeout=300)

    # -- GitHub: workflows ------------------------------------------------------------------------
    def context(self, event: dict[str, str]) -> wiring.Context:
        return wiring.Context(
            secrets=self.secrets,
            variables=self.variables,
            github=event,
            steps={"app-token.outputs.token": FORGE_TOKEN},
        )

    def runner_env(self, clone: Path) -> dict[str, str]:
        return wiring.runner_environment(
            clone,
            os.environ,
            {
                "GITHUB_REPOSITORY": FORGE_REPO,
                "GITHUB_API_URL": self.forge_url,
                "GITHUB_ACTOR": "github-actions[bot]",
                "PULUMI_HOME": self.info.pulumi_home,
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                "ROLLOUT_PULUMI": self.pulumi_env()["ROLLOUT_PULUMI"],
                # AWS is the moto server: the SDK's own variable, as for any tool pointed at a stand-in.
                "AWS_ENDPOINT_URL": self.info.moto_url,
            },
        )

    def run_workflow(self, name: str, event: dict[str, str], label: str) -> list[wiring.StepRun]:
        """Every run step of a shipped workflow in a fresh checkout (the install step is PYTHONPATH)."""
        runs_dir = self.run_dir / "runs"
        runs_dir.mkdir(exist_ok=True)
        clone = self.repo.checkout(runs_dir / f"{label}-{len(list(runs_dir.iterdir())):03d}")
        results = []
        runner_temp = clone.parent / f"{clone.name}.runner"
        for step in wiring.run_steps(clone / WORKFLOWS / name):
            if wiring.is_install(step):
                continue
            runner_env = wiring.with_job_files(self.runner_env(clone), runner_temp)
            result = wiring.run_step(step, self.context(event), cwd=clone, runner_env=runner_env)
            results.append(result)
            (clone.parent / f"{clone.name}.log").open("a").write(
                f"$ {step.name}\n{result.stdout}\n{result.stderr}\n(exit {result.returncode})\n"
            )
            if result.returncode != 0:
                break  # GitHub stops a job at its first failed step
        if not self.options.keep:
            shutil.rmtree(clone, ignore_errors=True)
            shutil.rmtree(runner_temp, ignore_errors=True)
        return results

    def scheduled_promotion(self) -> None:
        results = self.run_workflow(PROMOTE_WORKFLOW, {"token": FORGE_TOKEN}, "promote")
        last = results[-1] if results else None
        if last is None:
            return
        lines = [line for line in last.stdout.splitlines() if line and not line.startswith(" ")]
        outcome = "; ".join(lines)[:400] or last.last_line
        self.last_promotion = last.stdout.strip() or last.stderr.strip()
        kind = "promote-run" if last.returncode in (0, 3) else "workflow-failed"
        self.event(kind, "", f"exit {last.returncode}: {outcome}", data={"seconds": round(last.seconds, 1)})
        if last.returncode not in (0, 3):
            raise RehearsalFailed(
                f"{PROMOTE_WORKFLOW}: step {last.step.name!r} exited {last.returncode}: {last.last_line}"
            )

    def on_push(self) -> None:
        """GitHub's push trigger: ``rollout-up.yml`` for each new main whose changes match its paths."""
        head = self.repo.head()
        if head == self.last_main:
            return
        before, self.last_main = self.last_main, head
        changed = self.repo.changed(before, head)
        if not matches_paths(changed, self.up_paths):
            return
        results = self.run_workflow(UP_WORKFLOW, {"event.before": before, "sha": head}, "up")
        failed = [r for r in results if r.returncode != 0]
        detail = f"{head[:8]}: {', '.join(changed)}" + (f"; FAILED: {failed[0].last_line}" if failed else "")
        self.event("up", "", detail, commit=head, data={"seconds": round(sum(r.seconds for r in results), 1)})
        if failed:
            raise RehearsalFailed(f"{UP_WORKFLOW}: step {failed[0].step.name!r}: {failed[0].last_line}")
        self.check_agreement(head)

    def review_and_merge(self) -> None:
        """The reviewer: for each new pull request, check the signed-off boxes, merge, let GitHub push."""
        for pull in list(self.forge.pulls):
            if pull.number in self.pulls_seen or pull.state != "open":
                continue
            self.pulls_seen.add(pull.number)
            pull.body, checked = check_boxes(pull.body or "", self.signoffs)
            stack = next((s for s in STACKS if s in (pull.head or "") or s in (pull.title or "")), "")
            commit = self.repo.merge(pull.head, pull.title, pull.number)
            if commit is None:
                why = "conflicts with main (a rollback or retry changed the stack since): closed"
                self.forge.close(pull.number, f"Closed by the reviewer: {why}.")
                self.event("pr-closed", stack, f"#{pull.number} {pull.title}: {why}", pull=f"#{pull.number}")
                continue
            self.forge.merge(pull.number)
            self.event(
                "merge",
                stack,
                f"#{pull.number} {pull.title} ({checked} boxes checked)",
                commit=commit,
                pull=f"#{pull.number}",
            )
            self.on_push()

    # -- checks -----------------------------------------------------------------------------------
    def check_agreement(self, commit: str, settle: float = 30.0) -> None:
        """Git and each region's live objects agree, once in-flight changes settle.

        The live objects must be what ``commit`` (just deployed) says, or what main says when main has
        moved on since: a rollback the controller committed and applied, or a push whose own
        rollout-up run comes next. A rollback is a commit and an apply; between the two, or while the
        controller takes the second region, they differ for seconds. So a difference is re-read until
        ``settle`` seconds have passed; only one that outlasts that is a failure.
        """
        from devenv.rehearsal.live import live_view

        deadline = time.monotonic() + settle
        while True:
            head = self.repo.head()
            found: list[dict[str, Any]] = []
            for stack, region in STACKS.items():
                live = live_view(self.info.kubeconfig(region), NAMESPACE, self.plan.service)
                for candidate in dict.fromkeys((commit, head)):
                    state = self.repo.state(stack, candidate)
                    problems = agreement_problems(self.plan, state, live)
                    if not problems:
                        break
                found.append(
                    {
                        "at": self.elapsed(),
                        "stack": stack,
                        "commit": candidate,
                        "problems": problems,
                        "git": state.to_config(),
                        "live": live,
                    }
                )
            if not any(entry["problems"] for entry in found) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        self.record.checks.extend(found)
        for entry in found:
            if entry["problems"]:
                self.record.failures.append(
                    f"{entry['stack']} at {entry['commit'][:8]}: git and cluster disagree:"
                    f" {entry['problems'][0]}"
                )
                self.event("disagree", entry["stack"], entry["problems"][0], commit=entry["commit"])

    # -- the run ------------------------------------------------------------------------------------
    def run(self) -> Record:
        try:
            self._run()
        except UserError as err:
            self.record.failures.append(str(err))
        except KeyboardInterrupt:
            self.record.failures.append("interrupted")
        except Exception as err:  # a tool's own failure: still a report, with the trace beside it
            import traceback

            (self.run_dir / "error.txt").write_text(traceback.format_exc())
            first = (str(err).strip().splitlines() or [""])[0][:300]
            self.record.failures.append(
                f"{type(err).__name__}: {first} (trace in {self.run_dir / 'error.txt'})"
            )
        finally:
            self.record.wall_seconds = self.elapsed()
            try:
                if getattr(self, "repo", None) is not None and getattr(self, "world", None) is not None:
                    self.analyse()
            except Exception as err:  # the analysis must not hide the run's own outcome
                self.record.failures.append(f"analysis failed: {type(err).__name__}: {err}")
            self._stack.close()
            if not self.options.keep and getattr(self, "repo", None) is not None:
                self.say("taking the rehearsal's deployments down (pulumi destroy; --keep leaves them)")
                self.destroy()
            self.record.verdict = "PASS" if not self.record.failures else "FAIL"
        return self.record

    def analyse(self) -> None:
        """After the run, before the world stops: the seed timeline, gate evidence, detection budgets."""
        from devenv.rehearsal import analysis
        from infra.settings import Alerts

        hours = self.options.interval * self.scales.calendar / 3600
        rows: list[dict[str, Any]] = []
        for stack in STACKS:
            history = self.repo.history(stack, self.base_commit)
            rows += analysis.timeline(self.plan, stack, history, self.beta_start, self.scales.calendar, hours)
        self.record.stages["timeline"] = rows
        for row in rows:
            if not row["ok"]:
                self.record.failures.append(
                    f"{row['stack']}: {row['stage']} promoted on day {row['day']:.1f}, not in seed weeks"
                    f" {row['seed_weeks']} within one interval of due (day {row['due_day']})"
                )
        faults = [f.as_dict() for f in self.record.faults]
        self.record.stages["budgets"] = analysis.budgets(self.plan, faults, Alerts().detection_budget)
        for budget in self.record.stages["budgets"]:
            if not budget["ok"]:
                self.record.failures.append(
                    f"trigger {budget['trigger']} would miss its window at --scale 1"
                    f" by {-budget['margin']:.1f}s"
                )
        end = time.time()
        self.record.evidence = analysis.evidence_series(
            self.world.prometheus_url, end - self.elapsed(), end, self.plan
        )

    def _run(self) -> None:
        from devenv.forge_standin import serve_forge
        from devenv.rehearsal.environment import World

        self.forge_url, self.forge = self._stack.enter_context(serve_forge(token=FORGE_TOKEN))
        self.world = World(
            self.info, self.plan, self.options, self.run_dir, say=self.say, backend_url=self.backend.as_uri()
        )
        self._stack.callback(self.world.stop)
        self.world.start(STACKS)
        self.repo = self.prepare_repository()
        up_on = wiring.load_workflow(self.options.source / WORKFLOWS / UP_WORKFLOW)
        triggers = up_on.get("on") or up_on.get(True) or {}
        self.up_paths = list(((triggers.get("push") or {}).get("paths")) or ["**"])
        self.signoffs = load_signoffs(self.options.signoff_file, self.plan)
        self.secrets, self.variables = self.world.secrets(), self.world.variables()
        # The first push of the rehearsal's main: GitHub runs the up workflow for both stacks.
        self.last_main = git(self.repo.remote, "rev-parse", "main~1")
        self.on_push()
        self.world.start_alerting()
        self.event(
            "alerting",
            "",
            f"each region's controller runs as its Deployment declares; {len(self.world.rule_files)}"
            " PrometheusRule file(s) from the clusters run in the regions' Prometheus servers",
        )
        self.start_rollout()
        self.world.watch_weights(STACKS, self.repo, self.record, self.elapsed)
        deadline = self.options.deadline_factor * self.plan_seconds() + 60
        next_run = 0.0
        while not self.finished():
            if self.elapsed() > deadline:
                raise RehearsalFailed(
                    f"the rollout did not reach 100% in both regions within {deadline:.0f}s"
                )
            self.world.tick(self)
            if self.elapsed() >= next_run:
                next_run = self.elapsed() + self.options.interval
                self.scheduled_promotion()
                self.review_and_merge()
            self.on_push()  # a rollback the controller pushed
            self.check_progress()
            time.sleep(0.5)
        self.event("done", "", "both regions at 100%")
        self.run_drills()

    def run_drills(self) -> None:
        """Each drill CronJob of the primary region, run as it declares (drills.py), once."""
        from devenv.rehearsal import drills

        primary = next(iter(STACKS.values()))
        jobs = drills.drill_jobs(self.info.kubeconfig(primary), NAMESPACE)
        if not jobs:
            self.record.failures.append(f"no drill CronJob in {primary}: the drills are not deployed")
            return
        base = self.runner_env(self.run_dir)
        for job in jobs:
            clone = self.repo.checkout(self.run_dir / f"drill-{job['metadata']['name']}", "drill")
            base = {**self.runner_env(clone), **{k: v for k, v in self.secrets.items() if v}}
            result = drills.run_drill(job, self.secrets, clone, base)
            result["when"] = f"day {self.calendar_days():.1f}"
            self.record.drills.append(result)
            self.event("drill", "", f"{result['name']}: {result['outcome']} ({result['detail']})")
            if result["exit"] != 0:
                self.record.failures.append(f"drill {result['name']} {result['outcome']}: {result['detail']}")

    def retry_after_fix(self, stacks: list[str], why: str) -> None:
        """The on-call engineer, once the fault is fixed: ``rollout retry`` (the shipped CLI, in a fresh
        clone, as a person runs it) restarts each rolled-back stack's stage; the push starts rollout-up.

        A rollback is never undone by the scheduler alone: with the candidate off there is no evidence to
        promote on, and resuming is a person's call (docs/gitops.md, "Lifecycle"). Here the fix is the
        fault being cleared."""
        from rollout_policies.core.progression import is_rolled_back

        stacks = [s for s in stacks if is_rolled_back(self.plan, self.repo.state(s))]
        if not stacks:
            return
        runs_dir = self.run_dir / "runs"
        runs_dir.mkdir(exist_ok=True)
        clone = self.repo.checkout(runs_dir / f"retry-{len(list(runs_dir.iterdir())):03d}", "on-call")
        argv = [sys.executable, "-m", "rollout_policies.cli.main", "retry", "--repo", str(clone)]
        argv += ["--plan", str(clone / PLAN_IN_REPO), "--reason", why, "--actor", "on-call@markethub"]
        for stack in stacks:
            argv += ["--stack", stack]
        done = subprocess.run(
            argv, cwd=clone, env=self.runner_env(clone), capture_output=True, text=True, timeout=300
        )
        detail = (done.stdout.strip() or done.stderr.strip()).replace("\n", "; ")[:300]
        self.event("retry", ",".join(stacks), f"exit {done.returncode}: {detail}", commit=self.repo.head())
        if done.returncode != 0:
            raise RehearsalFailed(f"rollout retry --stack {' --stack '.join(stacks)}: {detail}")
        # The main loop sees the push and runs rollout-up.yml for it, as GitHub would.

    def check_progress(self) -> None:
        """A stack whose state has not moved for far longer than its stage needs is stuck: fail now, with
        what the last scheduled promotion said (the hold's reasons), instead of waiting for the deadline."""
        for stack in STACKS:
            state = self.repo.state(stack)
            key = (state.stage, state.step, state.candidate_weight)
            seen = self.progress.get(stack)
            if seen is None or seen[0] != key:
                self.progress[stack] = (key, self.elapsed())
                continue
            stage = self.plan.stage(state.stage)
            if stage.id == self.plan.stages[-1].id:
                continue
            longest = (
                max(stage.min_duration, max(s.bake for s in stage.steps)).total_seconds()
                / self.scales.calendar
            )
            allowed = 2 * longest + 10 * self.options.interval + 60
            if self.elapsed() - seen[1] > allowed:
                reasons = [
                    line.strip()
                    for line in self.last_promotion.splitlines()
                    if stack in line or "reason:" in line
                ][:6]
                raise RehearsalFailed(
                    f"{stack} stuck at {state.stage} step {state.step} for {self.elapsed() - seen[1]:.0f}s"
                    f" (its stage needs {longest:.0f}s);"
                    f" the last scheduled promotion said: {' | '.join(reasons)}"
                )

    def start_rollout(self) -> None:
        """Beta is live in both regions now: the team's commit that starts the rollout's clock from here.

        The first deployment takes a minute or more here, which is days at the calendar scale; the stage
        clock starts when the cohort route serves, not when the setup was committed.
        """
        from rollout_policies.gitops.stack_config import read_state, write_state

        git(self.repo.work, "pull", "-q", "--ff-only", "origin", "main")
        now = datetime.now(UTC).replace(microsecond=0)
        for stack in STACKS:
            path = self.repo.work / f"Pulumi.{stack}.yaml"
            state = read_state(path)
            write_state(path, state.model_copy(update={"stage_started_at": now, "step_started_at": now}))
        commit = self.repo.commit_all("rollout: beta starts now, live in both regions")
        self.beta_start = now
        self.rollout_t0 = self.elapsed()
        self.event("start", "", "beta live in both regions: the calendar starts (day 0)", commit=commit)
        self.on_push()

    def plan_seconds(self) -> float:
        return sum(s.min_duration.total_seconds() for s in self.plan.stages[:-1]) / self.scales.calendar

    def finished(self) -> bool:
        last = self.plan.stages[-1].id
        return all(self.repo.state(stack).stage == last for stack in STACKS)


# -- pure helpers (tested without clusters) -----------------------------------------------------------


def _start_at_beta(path: Path, now: datetime, kubeconfig: Path) -> None:
    """Rewrite a stack config's rollout block to the beta stage from ``now``; name its cluster."""
    from rollout_policies.gitops.stack_config import read_state, write_state

    state = read_state(path)
    beta = RolloutState.model_validate(
        {
            **state.model_dump(),
            "stage": "beta",
            "step": 0,
            "weights": {state.candidate.colour: 0, state.candidate.colour.other: 100},
            "stage_started_at": now,
            "step_started_at": now,
        }
    )
    write_state(path, beta)
    text = path.read_text()
    if "kubernetes:kubeconfig:" not in text:
        text = text.replace("config:\n", f"config:\n  kubernetes:kubeconfig: {kubeconfig}\n", 1)
        path.write_text(text)


def _controller_on(path: Path, settings: str) -> None:
    """Turn the controller on in a local stack config, as a team does for a real environment: the block
    the world gives (repository, image, providers), Alertmanager's target the controller's own Service
    (no ``alerts.webhookUrl``), and the namespace made by the team beforehand, with its Secrets."""
    text = path.read_text()
    edits = {
        "  markethub-rollout:alerts:\n    webhookUrl: http://127.0.0.1:8089/alerts\n": "",
        "  markethub-rollout:controller:\n    enabled: false\n": settings,
    }
    for old, new in edits.items():
        if old not in text:
            raise UserError(f"{path.name}: no {old.strip()!r} to turn the controller on")
        text = text.replace(old, new)
    path.write_text(text + '  markethub-rollout:createNamespace: "false"\n')


def check_boxes(body: str, signoffs: dict[str, str]) -> tuple[str, int]:
    """Tick ``- [ ]`` items of a pull request body whose text names a signed-off criterion."""
    lines, checked = [], 0
    for line in body.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("- [ ]") and any(
            key in line or text in line for key, text in signoffs.items()
        ):
            line = line.replace("- [ ]", "- [x]", 1)
            checked += 1
        lines.append(line)
    return "\n".join(lines), checked


def load_signoffs(path: Path | None, plan: Plan) -> dict[str, str]:
    """criterion id -> text: the person's sign-offs (default: every manual criterion, signed)."""
    from rollout_policies.plan.model import CriterionKind

    manual = {c.id: c.text for s in plan.stages for c in (*s.go, *s.no_go) if c.kind is CriterionKind.MANUAL}
    if path is None:
        return manual
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    chosen = data.get("signoffs", data) if isinstance(data, dict) else data
    unknown = [item for item in chosen if item not in manual]
    if unknown:
        raise UserError(f"{path}: signoffs: {unknown[0]!r} is not a manual criterion of the plan")
    return {item: manual[item] for item in chosen}


def agreement_problems(plan: Plan, state: RolloutState, live: dict[str, Any]) -> list[str]:
    """What differs between a stack's state on main and its live objects (empty: they agree)."""
    from infra.flags import flag_definitions, sticky_for
    from infra.settings import StackSettings

    problems = []
    weights = live.get("weights")
    expected = {c.value: state.weights[c] for c in (Colour.BLUE, Colour.GREEN)}
    if weights != expected:
        problems.append(f"weights: git {expected}, live {weights}")
    from rollout_policies.core.progression import is_rolled_back

    # The cohort rule sends the beta users to the candidate from beta on, until a rollback takes
    # every user off the candidate (issue 12: the rollback removes it, in every stage).
    cohort_expected = str(plan.stages[0].audience.kind) == "cohort" and not is_rolled_back(plan, state)
    if bool(live.get("cohort_rule")) != cohort_expected:
        problems.append(
            f"cohort rule: git says {'on' if cohort_expected else 'off'}, live {live.get('cohort_rule')}"
        )
    flags = live.get("flags")
    # A rolled-back stack serves the stable feature set (issue 12), which this check does not model.
    # A percentage stage splits the candidate's features by user (infra/flags.py, sticky_for).
    stage = plan.stage(state.stage)
    sticky = sticky_for(
        plan,
        stage,
        state.candidate_weight,
        rolled_back=False,
        cohort=StackSettings.model_fields["cohort_value"].default,
    )
    wanted = None if is_rolled_back(plan, state) else flag_definitions(stage.features, sticky)
    if flags is not None and wanted is not None and flags != wanted:
        problems.append(f"flags: live flags are not stage {state.stage}'s")
    return problems


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: time.monotonic() - started


__all__ = ["Options", "Record", "Rehearsal", "RehearsalFailed", "agreement_problems", "check_boxes"]


def _delete_namespace(kubeconfig: Path, namespace: str, timeout: float = 120) -> None:
    """Remove what an earlier run left in the namespace (a fresh backend would collide with it)."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    try:
        api.delete_namespace(namespace)
    except client.ApiException as err:
        if err.status == 404:
            return
        raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.read_namespace(namespace)
        except client.ApiException as err:
            if err.status == 404:
                return
        time.sleep(0.5)
    raise RehearsalFailed(f"namespace {namespace} left by an earlier run did not go away in {timeout:.0f}s")
