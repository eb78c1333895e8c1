"""`make demo`: one whole rollout on the running local environment, step by step, with a summary.

    rollout env up                               # once (make demo does it)
    python -m devenv.demo [--state-dir DIR] [--keep]

It drives the product as a team would: the rollout repository is a clone of this project's HEAD on
a bare remote, each local stack names its region's cluster in a committed ``kubernetes:kubeconfig``,
``pulumi up`` runs the real CLI and provider (Automation API, program hosted in this process), the
``rollout`` commands run as subprocesses, and the promotion's pull request goes to the local stand-in
for GitHub's API (GitHub cannot be reached from here). Time is compressed with ``--now``: nothing
sleeps for a plan duration. Without ``--keep`` the demo's deployments are destroyed at the end (the
environment itself keeps running; ``make env-down`` stops it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from devenv.local import EnvInfo, LocalEnvironment
from rollout_policies.core.durations import span
from rollout_policies.errors import UserError
from rollout_policies.state import Colour, RolloutState

ROOT = Path(__file__).resolve().parents[1]
# stack -> region; the first is the primary region (regionRole: primary in its config).
STACKS = {"local-us-east-1": "us-east-1", "local-us-west-2": "us-west-2"}
PRIMARY = "local-us-east-1"
SERVICE, NAMESPACE = "markethub-mobile", "markethub"
FORGE_REPO, FORGE_TOKEN = "markethub/rollout", "demo-token"
BACKUP_BUCKET, BACKUP_PREFIX = "markethub-backups-local", "pgbackrest/markethub-mobile"
KEPT_MARKER = "kept"  # in <state dir>/demo: the folder of the run whose deployments --keep left

Weights = dict[Colour, int]


class DemoError(UserError):
    """A demo step failed: one line saying which step and why."""


@dataclass(frozen=True)
class StepRecord:
    """One numbered step of the demo as it ran."""

    number: int
    title: str
    seconds: float
    outcome: str


@dataclass
class DemoReport:
    """What the demo did and saw, for the summary and for the e2e test."""

    run_dir: Path
    steps: list[StepRecord] = field(default_factory=list)
    # label ("beta", "promoted", "rolled back") -> stack -> live HTTPRoute weights
    live: dict[str, dict[str, Weights | None]] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)  # "healthy"/"unhealthy" -> PROMOTE/...
    pull_requests: list[str] = field(default_factory=list)
    drift: dict[str, str] = field(default_factory=dict)
    audit_trail: list[str] = field(default_factory=list)
    drill: str = "not run"
    cleanup_seconds: float = 0.0


# -- helpers --------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["failed"]
        raise DemoError(f"git {' '.join(args[:2])} in {cwd}: {detail[0]}")
    return done.stdout.strip()


def _fmt(weights: Weights | None) -> str:
    if weights is None:
        return "unreadable"
    return f"blue {weights[Colour.BLUE]} / green {weights[Colour.GREEN]}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Repository:
    """The rollout repository: a bare remote and the clone the tools commit from and pulumi runs in."""

    info: EnvInfo
    remote: Path
    work: Path
    env: dict[str, str]

    def applier(self) -> Any:
        from rollout_policies.gitops.seams import AutomationApplier

        return AutomationApplier(self.work, lambda stack: dict(self.env))

    def up(self, stack: str) -> dict[str, int]:
        """``pulumi up`` of one stack; returns the resource change summary (op -> count)."""
        from pulumi import automation as auto

        try:
            result = self.applier().stack(stack).up(color="never")
        except auto.CommandError as err:
            raise DemoError(f"pulumi up --stack {stack}: {_last_line(str(err))}") from None
        return dict(result.summary.resource_changes or {})

    def destroy(self, stack: str) -> None:
        from pulumi import automation as auto

        with contextlib.suppress(auto.CommandError, UserError):
            selected = self.applier().stack(stack)
            selected.destroy(color="never")
            selected.workspace.remove_stack(stack)

    def live_weights(self, stack: str) -> Weights | None:
        from kubernetes import client, config

        from rollout_policies.gitops.kube_live import route_weights

        api = config.new_client_from_config(str(self.info.kubeconfig(STACKS[stack])))
        try:
            route = client.CustomObjectsApi(api).get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", SERVICE
            )
        except client.ApiException:
            return None
        finally:
            api.close()
        return route_weights(route, SERVICE)

    def main_state(self, stack: str) -> RolloutState:
        from rollout_policies.gitops.stack_config import config_name, state_from_text

        git(self.work, "fetch", "-q", "origin")
        path = config_name(stack)
        return state_from_text(git(self.work, "show", f"origin/main:{path}"), path)

    def rollout(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            # -P: import the installed package, not the copy inside the rollout repository's clone.
            [sys.executable, "-P", "-m", "rollout_policies.cli.main", *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def rollout_ok(self, *args: str, allowed: Sequence[int] = (0,)) -> str:
        done = self.rollout(*args)
        if done.returncode not in allowed:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["failed"]
            raise DemoError(f"rollout {args[0]} exited {done.returncode}: {detail[0]}")
        return done.stdout


def _last_line(output: str) -> str:
    """The first real error Pulumi reported (not its "update failed" / "2 errored" tallies)."""
    causes = [line.split("error: ", 1)[1].strip() for line in output.splitlines() if "error: " in line]
    causes = [cause for cause in causes if cause != "update failed"]
    return (causes[0] if causes else (output.strip().splitlines() or ["failed"])[-1].strip())[:200]


def _prepare_repository(info: EnvInfo, run_dir: Path) -> _Repository:
    """A bare remote holding this project's HEAD, cloned, with each stack pointed at its cluster."""
    remote, work = run_dir / "remote.git", run_dir / "work"
    git(run_dir, "init", "-q", "--bare", "-b", "main", str(remote))
    git(ROOT, "push", "-q", str(remote), "HEAD:refs/heads/main")
    git(run_dir, "clone", "-q", str(remote), str(work))
    git(work, "config", "user.email", "demo@markethub.local")
    git(work, "config", "user.name", "markethub demo")
    for stack, region in STACKS.items():
        path = work / f"Pulumi.{stack}.yaml"
        path.write_text(path.read_text() + f"  kubernetes:kubeconfig: {info.kubeconfig(region)}\n")
    git(work, "commit", "-qam", "Point the local stacks at this environment's clusters")
    git(work, "push", "-q", "origin", "main")
    env = {**os.environ, **info.pulumi_env(), **info.aws_env()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["GITHUB_TOKEN"] = FORGE_TOKEN
    for name in ("SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY"):  # the demo pages nobody
        env.pop(name, None)
    return _Repository(info, remote, work, env)


# -- metrics files ----------------------------------------------------------------------------


def _meeting(op: str, bound: float) -> float:
    """A value for which ``value <op> bound`` holds."""
    return {"<": bound - 1, "<=": bound, ">": bound + 1, ">=": bound}.get(op, bound)


def _clear_of(op: str, bound: float) -> float:
    """A value for which ``value <op> bound`` does not hold (a quiet trigger, an unmet no-go)."""
    return {">": min(0.0, bound), ">=": bound - 1, "<": bound, "<=": bound + 1}.get(op, bound + 1)


def healthy_metrics(stage_id: str, now: datetime, since: datetime) -> dict[str, Any]:
    """Every gate of the stage at a healthy value, every criterion clean, every trigger quiet."""
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
    from rollout_policies.plan.model import CriterionKind

    plan = load_plan(DEFAULT_PLAN)
    stage = plan.stage(stage_id)
    metrics: dict[str, Any] = {}
    for gate in stage.gates:
        if gate.target is not None:
            bound = gate.target.value
            metrics[gate.metric] = bound - 0.5 if gate.target.op.value in ("<", "<=") else bound + 0.5
    for criterion in (*stage.go, *stage.no_go):
        if criterion.kind is CriterionKind.WINDOW and criterion.metric:
            metrics.setdefault(criterion.metric, {"value": 0, "since": _iso(since)})
        elif criterion.kind is CriterionKind.COUNT and criterion.metric and criterion.threshold:
            op, bound = criterion.threshold.op.value, criterion.threshold.value
            met = criterion in stage.go  # a go criterion holds; a no-go criterion does not
            metrics.setdefault(criterion.metric, _meeting(op, bound) if met else _clear_of(op, bound))
    for trigger in plan.triggers:
        metrics.setdefault(trigger.metric, _clear_of(trigger.threshold.op.value, trigger.threshold.value))
    return {"observed_at": _iso(now), "metrics": metrics}


def unhealthy_metrics(
    stage_id: str, now: datetime, since: datetime, metric: str = "api_error_rate"
) -> dict[str, Any]:
    """The healthy file with one gate's value beyond its alert threshold (by 1.5 units)."""
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

    document = healthy_metrics(stage_id, now, since)
    gate = next(
        (g for g in load_plan(DEFAULT_PLAN).stage(stage_id).gates if g.metric == metric and g.alert), None
    )
    if gate is None or gate.alert is None:
        raise DemoError(f"plan: stage {stage_id} has no alert on {metric} to cross")
    op, bound = gate.alert.op.value, gate.alert.value
    document["metrics"][metric] = bound + 1.5 if op in (">", ">=") else bound - 1.5
    return document


def manual_signoffs(stage_id: str) -> list[str]:
    """Go items signed off as met; no-go items signed off as checked and absent."""
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
    from rollout_policies.plan.model import CriterionKind

    stage = load_plan(DEFAULT_PLAN).stage(stage_id)
    return [c.id for c in (*stage.go, *stage.no_go) if c.kind is CriterionKind.MANUAL]


def _min_duration(stage_id: str) -> timedelta:
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

    return load_plan(DEFAULT_PLAN).stage(stage_id).min_duration


# -- the demo ---------------------------------------------------------------------------------


class _Steps:
    """Numbered progress lines and per-step timings."""

    def __init__(self, report: DemoReport, out: TextIO) -> None:
        self.report, self.out = report, out

    def say(self, text: str) -> None:
        print(f"     {text}", file=self.out, flush=True)

    @contextlib.contextmanager
    def step(self, number: int, title: str) -> Iterator[list[str]]:
        print(f"[{number}] {title}", file=self.out, flush=True)
        outcome: list[str] = []
        started = time.monotonic()
        try:
            yield outcome
        except UserError as err:
            raise DemoError(f"step {number} ({title}): {err}") from None
        except Exception as err:  # a tool's own failure: still one line, naming the step
            first = (str(err).strip().splitlines() or [""])[0][:300]
            raise DemoError(f"step {number} ({title}): {type(err).__name__}: {first}") from err
        seconds = time.monotonic() - started
        self.report.steps.append(StepRecord(number, title, seconds, outcome[0] if outcome else "done"))
        print(f"     ... {seconds:.1f}s", file=self.out, flush=True)


def _decision(evaluate_json: str) -> tuple[str, list[str]]:
    data = json.loads(evaluate_json)
    reasons = [f"[{r.get('code')}] {r.get('message')}" for r in data.get("reasons", [])]
    return str(data["decision"]).upper(), reasons


def _drill(repo: _Repository, run_dir: Path, steps: _Steps) -> str:
    """The backup-restore dry run, when the environment holds a backup to restore."""
    import boto3

    settings = (repo.info.database or {}).get("pgbackrest") or {}
    bucket = settings.get("PGBACKREST_REPO1_S3_BUCKET", BACKUP_BUCKET)
    info_key = "{}/backup/{}/backup.info".format(
        settings.get("PGBACKREST_REPO1_PATH", BACKUP_PREFIX).strip("/"), settings.get("PGBACKREST_STANZA", "")
    )
    s3 = boto3.client("s3", endpoint_url=repo.info.moto_url, **_aws_credentials())
    try:  # a backup set's manifest: the stanza exists and holds at least one backup
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=info_key.rsplit("/", 1)[0] + "/")
        found = bool(settings) and any(
            item["Key"].endswith("/backup.manifest") for item in listed.get("Contents", [])
        )
    except s3.exceptions.NoSuchBucket:
        found = False
    if not found:
        steps.say(
            f"skipped: no pgBackRest repository in s3://{bucket}/{info_key} (`rollout env up --database`"
            " starts a database archiving to one; `rollout drill backup --type full --env ...` backs it up)"
        )
        return "skipped (no backup in the environment)"
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "rollout_policies.cli.main",
            "drill",
            "backup-restore",
            "--env",
            str(Path(repo.info.state_dir) / "env.json"),
            "--report-dir",
            str(run_dir / "drills"),
        ],
        cwd=run_dir,
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    steps.say(last)
    return {0: "passed", 1: "failed", 3: "inconclusive"}.get(done.returncode, f"exit {done.returncode}")


def _aws_credentials() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def run_demo(info: EnvInfo, *, out: TextIO | None = None, keep: bool = False) -> DemoReport:
    """Run the whole demo on the environment ``info`` describes; raises DemoError on a failed step."""
    out = out or sys.stdout
    runs = Path(info.state_dir) / "demo"
    demo = _Demo(info, _new_run_dir(runs), out)
    demo.environment()
    try:
        base = demo.repository()
        demo.deploy_beta()
        beta = demo.main_state()
        now = beta.stage_started_at + _min_duration(beta.stage) + timedelta(hours=1)
        healthy = demo.evaluate_healthy(beta, now)
        promoted = demo.promote(healthy)
        demo.roll_back(promoted, now + timedelta(hours=1))
        demo.drift()
        demo.drill()
        demo.audit_trail(base)
    finally:
        demo.clean_up(runs, keep)
    _summary(demo.report, out, keep)
    return demo.report


def _new_run_dir(runs: Path) -> Path:
    """A new folder for this run under ``runs``, named by the time it starts."""
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = runs / time.strftime("run-%Y%m%dT%H%M%SZ", time.gmtime())
    suffix = 1
    while run_dir.exists():
        run_dir = runs / f"{run_dir.name.split('.')[0]}.{suffix}"
        suffix += 1
    run_dir.mkdir()
    return run_dir


@dataclass(frozen=True)
class _Healthy:
    """The healthy evidence the beta stage was evaluated on, which the promotion offers again."""

    metrics_file: Path
    now: datetime
    signoffs: list[str]  # --signoff flags


class _Demo:
    """One run of the demo: each numbered step is a method, in the order ``run_demo`` calls them."""

    def __init__(self, info: EnvInfo, run_dir: Path, out: TextIO) -> None:
        self.info, self.run_dir, self.out = info, run_dir, out
        self.report = DemoReport(run_dir)
        self.steps = _Steps(self.report, out)
        self._repo: _Repository | None = None  # set as soon as it exists, so clean_up can destroy

    @property
    def repo(self) -> _Repository:
        assert self._repo is not None, "repository() runs first"
        return self._repo

    def environment(self) -> None:
        steps = self.steps
        with steps.step(1, "use the running local environment") as outcome:
            for region in self.info.regions.values():
                steps.say(f"region {region.name}: {region.server} ({len(region.nodes)} nodes)")
            steps.say(f"pulumi backend {self.info.pulumi_backend_url}; moto {self.info.moto_url}")
            outcome.append(f"{len(self.info.regions)} regions")

    def repository(self) -> str:
        """Step 2; returns the commit the rollout repository starts from (the audit trail's base)."""
        steps = self.steps
        with steps.step(
            2, "prepare the rollout repository (this project's HEAD on a bare remote)"
        ) as outcome:
            destroy_kept(self.info, steps.say)
            self._repo = repo = _prepare_repository(self.info, self.run_dir)
            steps.say(f"remote {repo.remote}")
            steps.say(f"clone  {repo.work}  (stacks point at their region's kubeconfig)")
            base = git(ROOT, "rev-parse", "HEAD")
            outcome.append(f"{base[:7]} + 1 commit")
        return base

    def deploy_beta(self) -> None:
        steps, repo, report = self.steps, self.repo, self.report
        with steps.step(3, "pulumi up both regions at the beta stage") as outcome:
            for stack in STACKS:
                changes = repo.up(stack)
                steps.say(f"{stack}: {', '.join(f'{op} {n}' for op, n in sorted(changes.items()))}")
            # The first `pulumi up` writes each stack's encryption salt: committed once, as after
            # `pulumi stack init`.
            if git(repo.work, "status", "--porcelain", "--untracked-files=no"):
                git(repo.work, "commit", "-qam", "pulumi stack init: encryption salts")
                git(repo.work, "push", "-q", "origin", "main")
            report.live["beta"] = self._live_weights()
            for stack, weights in report.live["beta"].items():
                steps.say(f"{stack} HTTPRoute (read from {STACKS[stack]}'s API server): {_fmt(weights)}")
            outcome.append(", ".join(_fmt(w) for w in report.live["beta"].values()))

    def main_state(self) -> RolloutState:
        """The primary stack's rollout state on main."""
        return self.repo.main_state(PRIMARY)

    def evaluate_healthy(self, beta: RolloutState, now: datetime) -> _Healthy:
        """Step 4: the plan, then the beta stage's gates at ``now`` on healthy metrics."""
        steps, repo = self.steps, self.repo
        with steps.step(
            4, f"plan and gates: evaluate {PRIMARY} at {beta.stage} with healthy metrics"
        ) as outcome:
            plan_line = repo.rollout_ok("plan", "show").splitlines()[0]
            steps.say(plan_line)
            healthy = self.run_dir / "metrics-healthy.json"
            healthy.write_text(json.dumps(healthy_metrics(beta.stage, now, beta.stage_started_at), indent=2))
            signoffs = [arg for s in manual_signoffs(beta.stage) for arg in ("--signoff", s)]
            steps.say(
                f"compressed time: --now {_iso(now)} (stage began {_iso(beta.stage_started_at)}, "
                f"min duration {span(_min_duration(beta.stage))})"
            )
            decision, reasons = _decision(
                repo.rollout_ok(
                    "evaluate",
                    "--stage",
                    beta.stage,
                    "--metrics-file",
                    str(healthy),
                    "--now",
                    _iso(now),
                    "--stage-started",
                    _iso(beta.stage_started_at),
                    "--json",
                    *signoffs,
                )
            )
            self.report.decisions["healthy"] = decision
            steps.say(f"decision: {decision}  {reasons[0] if reasons else ''}")
            outcome.append(decision)
        return _Healthy(healthy, now, signoffs)

    def promote(self, healthy: _Healthy) -> RolloutState:
        """Step 5: the promotion's pull request on the forge stand-in, its merge, and `pulumi up`;
        returns the primary stack's state after it."""
        from devenv.forge_standin import serve_forge

        steps, repo, report = self.steps, self.repo, self.report
        title = f"promote {PRIMARY}: branch + pull request, merge, pulumi up"
        with serve_forge(token=FORGE_TOKEN) as (forge_url, forge), steps.step(5, title) as outcome:
            proposed = json.loads(
                repo.rollout_ok(
                    "promote",
                    "--stack",
                    PRIMARY,
                    "--metrics-file",
                    str(healthy.metrics_file),
                    "--now",
                    _iso(healthy.now),
                    "--forge-url",
                    forge_url,
                    "--forge-repo",
                    FORGE_REPO,
                    "--json",
                    *healthy.signoffs,
                )
            )
            proposal = proposed[0] if isinstance(proposed, list) else proposed
            branch = proposal.get("branch")
            if not branch:
                raise DemoError(f"rollout promote proposed nothing: {proposal.get('outcome', proposal)}")
            for pull in forge.pulls:
                report.pull_requests.append(f"#{pull.number} {pull.title}")
                steps.say(f"pull request #{pull.number} on the GitHub stand-in: {pull.title}")
                reviewers = [*pull.reviewers, *(f"{FORGE_REPO.split('/')[0]}/{t}" for t in pull.teams)]
                steps.say(
                    f"  {pull.head} -> {pull.base}; review requested from {', '.join(reviewers) or '-'}"
                )
            if forge.violations:
                raise DemoError(f"the forge stand-in saw requests GitHub would refuse: {forge.violations[0]}")
            self._merge(branch)
            changes = repo.up(PRIMARY)  # the on-merge workflow's `pulumi up`
            steps.say(f"pulumi up {PRIMARY}: {', '.join(f'{op} {n}' for op, n in sorted(changes.items()))}")
            promoted = repo.main_state(PRIMARY)
            report.live["promoted"] = self._live_weights()
            steps.say(
                f"git says {PRIMARY} is at {promoted.stage} step {promoted.step}: {_fmt(promoted.weights)}"
            )
            for stack, weights in report.live["promoted"].items():
                steps.say(f"{stack} live HTTPRoute: {_fmt(weights)}")
            outcome.append(
                f"{promoted.stage} step {promoted.step}, live {_fmt(report.live['promoted'][PRIMARY])}"
            )
        return promoted

    def _merge(self, branch: str) -> None:
        """Merging the pull request: what GitHub does on merge, done on the bare remote."""
        work = self.repo.work
        git(work, "fetch", "-q", "origin")
        git(work, "merge", "-q", "--ff-only", f"origin/{branch}")
        git(work, "push", "-q", "origin", "main", f":{branch}")  # delete branch on merge
        self.steps.say(f"merged {branch} into main: {git(work, 'log', '-1', '--format=%h %s')}")

    def roll_back(self, promoted: RolloutState, later: datetime) -> None:
        """Step 6: the promoted step's gates on unhealthy metrics decide ROLLBACK; `rollout rollback
        --apply` restores the stable colour in git and in the cluster."""
        steps, repo, report = self.steps, self.repo, self.report
        with steps.step(6, f"unhealthy candidate: evaluate, then rollback --apply {PRIMARY}") as outcome:
            unhealthy = self.run_dir / "metrics-unhealthy.json"
            bad = unhealthy_metrics(promoted.stage, later, promoted.stage_started_at)
            unhealthy.write_text(json.dumps(bad, indent=2))
            steps.say(f"the candidate's api_error_rate: {bad['metrics']['api_error_rate']}% (metrics file)")
            decision, reasons = _decision(
                repo.rollout_ok(
                    "evaluate",
                    "--stage",
                    promoted.stage,
                    "--step",
                    str(promoted.step),
                    "--metrics-file",
                    str(unhealthy),
                    "--now",
                    _iso(later),
                    "--stage-started",
                    _iso(promoted.stage_started_at),
                    "--step-started",
                    _iso(promoted.step_started_at),
                    "--json",
                )
            )
            report.decisions["unhealthy"] = decision
            steps.say(f"decision: {decision}  {reasons[0] if reasons else ''}")
            if decision != "ROLLBACK":
                raise DemoError(f"expected ROLLBACK for an error rate beyond its alert, got {decision}")
            repo.rollout_ok(
                "rollback",
                "--stack",
                PRIMARY,
                "--reason",
                f"demo: api_error_rate {reasons[0] if reasons else ''}",
                "--evidence",
                str(unhealthy.name),
                "--apply",
                "--applier",
                "pulumi",
                "--now",
                _iso(later),
            )
            git(repo.work, "fetch", "-q", "origin")
            steps.say(f"commit on main: {git(repo.work, 'log', '-1', '--format=%h %s', 'origin/main')}")
            report.live["rolled back"] = self._live_weights()
            for stack, weights in report.live["rolled back"].items():
                steps.say(f"{stack} live HTTPRoute: {_fmt(weights)}")
            outcome.append(f"{decision}; live {_fmt(report.live['rolled back'][PRIMARY])}")

    def drift(self) -> None:
        steps, repo = self.steps, self.repo
        with steps.step(
            7, "rollout status --live kubernetes (drift between git and the clusters)"
        ) as outcome:
            git(repo.work, "merge", "-q", "--ff-only", "origin/main")
            stacks = [arg for stack in STACKS for arg in ("--stack", stack)]
            status = json.loads(repo.rollout_ok("status", "--live", "kubernetes", "--json", *stacks))
            for line in repo.rollout_ok("status", "--live", "kubernetes", *stacks).splitlines():
                steps.say(line)
            self.report.drift = _drift(status)
            outcome.append(", ".join(f"{s}: {d}" for s, d in self.report.drift.items()))

    def drill(self) -> None:
        with self.steps.step(8, "backup-restore drill (dry run)") as outcome:
            self.report.drill = _drill(self.repo, self.run_dir, self.steps)
            outcome.append(self.report.drill)

    def audit_trail(self, base: str) -> None:
        steps, report = self.steps, self.report
        with steps.step(9, "audit trail: the git log of the stack configs") as outcome:
            report.audit_trail = _audit_trail(self.repo, base)
            steps.say(f"{len(report.audit_trail)} commits on main touch Pulumi.local-*.yaml (listed below)")
            outcome.append(f"{len(report.audit_trail)} commits")

    def clean_up(self, runs: Path, keep: bool) -> None:
        """Destroy the run's deployments, or with ``keep`` record the run so the next one does."""
        if self._repo is None:
            return
        if keep:
            _remember(runs, self.run_dir)
            return
        print(
            "[-] cleaning up: pulumi destroy the demo's stacks (--keep leaves them)",
            file=self.out,
            flush=True,
        )
        started = time.monotonic()
        for stack in STACKS:
            self._repo.destroy(stack)
        self.report.cleanup_seconds = time.monotonic() - started

    def _live_weights(self) -> dict[str, Weights | None]:
        """Each stack's HTTPRoute weights as its region's API server has them."""
        return {stack: self.repo.live_weights(stack) for stack in STACKS}


def _audit_trail(repo: _Repository, base: str) -> list[str]:
    """The demo's commits to the stack configs, newest first: hash, decision trailer, subject."""
    log = git(
        repo.work,
        "log",
        "--format=%h%x1f%(trailers:key=Rollout-Decision,valueonly,separator=)%x1f%s",
        f"{base}..origin/main",
        "--",
        *(f"Pulumi.{stack}.yaml" for stack in STACKS),
    )
    lines = []
    for entry in log.splitlines():
        commit, decision, subject = [*entry.split("\x1f"), "", ""][:3]
        lines.append(f"{commit}  {(decision.strip() or '-'):<9} {subject}")
    return lines


def _drift(status: Any) -> dict[str, str]:
    rows = status if isinstance(status, list) else status.get("stacks", status)
    drift: dict[str, str] = {}
    if isinstance(rows, dict):
        rows = [{"stack": name, **value} for name, value in rows.items()]
    for row in rows:
        value = row.get("drift")
        if isinstance(value, dict):
            value = value.get("status") or value.get("state") or json.dumps(value)
        drift[str(row.get("stack"))] = str(value)
    return drift


def _remember(runs: Path, run_dir: Path) -> None:
    (runs / KEPT_MARKER).write_text(f"{run_dir}\n")


def destroy_kept(info: EnvInfo, say: Callable[[str], None] = lambda line: None) -> Path | None:
    """Destroy the deployments a run kept with --keep still owns, from its clone (it has the salts).

    Returns that run's folder (its files stay), or None when no kept run is recorded.
    """
    marker = Path(info.state_dir) / "demo" / KEPT_MARKER
    if not marker.exists():
        return None
    previous = Path(marker.read_text().strip())
    if (previous / "work").is_dir():
        say(f"destroying the deployments a kept run left: {previous.name}")
        env = {**os.environ, **info.pulumi_env(), **info.aws_env()}
        old = _Repository(info, previous / "remote.git", previous / "work", env)
        for stack in STACKS:
            old.destroy(stack)
    marker.unlink()
    return previous


def _summary(report: DemoReport, out: TextIO, keep: bool) -> None:
    print("\nSummary", file=out)
    rows = [("step", "what", "time", "outcome")]
    rows += [(str(s.number), s.title, f"{s.seconds:.1f}s", s.outcome) for s in report.steps]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for index, row in enumerate(rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3],
            file=out,
        )
        if index == 0:
            print("  ".join("-" * width for width in widths) + "  " + "-" * 7, file=out)
    total = sum(s.seconds for s in report.steps)
    cleanup = f" + cleanup {report.cleanup_seconds:.1f}s" if report.cleanup_seconds else ""
    print(f"total {total:.1f}s{cleanup}; files in {report.run_dir}", file=out)
    print("\nAudit trail (git log -- Pulumi.local-*.yaml, the demo's commits, newest first):", file=out)
    for line in report.audit_trail:
        print(f"  {line}", file=out)
    if keep:
        print(
            f"\nkept: the deployments and {report.run_dir / 'work'}; the next demo run destroys them",
            file=out,
        )
    print("the environment keeps running: `make env-down` stops it", file=out, flush=True)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Parse flags, find the running environment, run the demo; exit 2 with one line on failure."""
    parser = argparse.ArgumentParser(prog="python -m devenv.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", help="the environment's folder (default: .local/env of the work tree)")
    parser.add_argument("--keep", action="store_true", help="leave the demo's deployments and repository")
    args = parser.parse_args(argv)
    try:
        environment = LocalEnvironment(args.state_dir)
        info = environment.load()
        if info is None or not all(c.running for c in environment.status(info)):
            raise UserError(
                f"the local environment in {environment.state_dir} is not running "
                f"(run `rollout env up{' --state-dir ' + args.state_dir if args.state_dir else ''}` first)"
            )
        run_demo(info, out=out, keep=args.keep)
    except UserError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
