"""A whole alerting path on loopback, for the tests and the benchmark.

One ``AlertingLane`` is: a bare git remote with one stack at the limited stage's first step (green,
the candidate, at 2%), the traffic simulator as the service (its versions' /metrics, its crash
reporter's API, its load balancer publishing to CloudWatch on a moto server), ``rollout serve`` (the
real command, in its own process, with a bearer token and the ``ROLLOUT_*`` provider variables in
its environment: it collects the crash reporter and CloudWatch and exports them at /metrics),
Debian's Prometheus scraping the service and the controller with the plan's trigger rules (from
``infra/alerts.py``, and nothing else), and Debian's Alertmanager routing rollback alerts to the
controller and every other alert to a notification receiver. Everything is stopped by pid when the
lane closes, also after failures.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from devenv.local import EnvInfo
from devenv.services import HOST, Alertmanager, MotoServer, Prometheus, free_port
from infra.settings import Alerts
from rollout_policies import envvars
from rollout_policies.alerting.rules import alertmanager_config, write_trigger_rules
from rollout_policies.plan.model import Plan, parse_duration
from rollout_policies.state import Colour
from simulator.simulation import Simulation
from simulator.traffic import FixedSplit, WeightSource

STACK = "local-us"
REGION = "us-east-1"
TOKEN_ENV = envvars.WEBHOOK_TOKEN

STACK_CONFIG = """\
# Stack config for the local environment's US region.
config:
  markethub-rollout:region: us-east-1
  markethub-rollout:rollout:
    stage: limited
    step: 0
    stable:    {colour: blue,  version: 4.12.0}
    candidate: {colour: green, version: 5.0.0}
    weights:   {blue: 98, green: 2}
    stageStartedAt: "2026-11-20T09:00:00Z"
    stepStartedAt:  "2026-11-20T09:00:00Z"
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True)
    return done.stdout


class GitRemote:
    """A bare repository standing for the team's repository, seeded with one stack config."""

    def __init__(self, root: Path, stacks: tuple[str, ...] = (STACK,)) -> None:
        self.bare = root / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        seed = self.clone(root / "seed", "seed")
        self._seed(seed, stacks)

    @classmethod
    def existing(cls, bare: Path) -> GitRemote:
        """A remote made elsewhere; commits are counted from its main branch as it is now."""
        remote = cls.__new__(cls)
        remote.bare = bare
        remote.seeded = remote.head()
        return remote

    def _seed(self, seed: Path, stacks: tuple[str, ...]) -> None:
        for stack in stacks:
            (seed / f"Pulumi.{stack}.yaml").write_text(STACK_CONFIG)
        git(seed, "add", ".")
        git(seed, "commit", "-q", "-m", "seed: stacks at limited step 0")
        git(seed, "push", "-q", "origin", "main")
        self.seeded = self.head()

    def clone(self, target: Path, name: str) -> Path:
        subprocess.run(["git", "clone", "-q", str(self.bare), str(target)], check=True, capture_output=True)
        git(target, "config", "user.name", f"rollout {name}")
        git(target, "config", "user.email", f"{name}@example.test")
        return target

    def head(self) -> str:
        return git(self.bare, "rev-parse", "main").strip()

    def show(self, path: str, ref: str = "main") -> str:
        return git(self.bare, "show", f"{ref}:{path}")

    def messages(self) -> list[str]:
        return git(self.bare, "log", "--format=%B%x00", "main").split("\0")[:-1]

    def commits_since_seed(self) -> list[str]:
        return git(self.bare, "rev-list", f"{self.seeded}..main").split()


def compressed(plan: Plan, factor: float) -> Plan:
    """The plan with every trigger window divided by ``factor`` (tests only: real windows take minutes)."""
    triggers = tuple(t.model_copy(update={"window": t.window / factor}) for t in plan.triggers)
    return plan.model_copy(update={"triggers": triggers})


def compressed_budget(factor: float) -> str:
    """The rules' detection budget divided like the windows, so compressed triggers keep their order."""
    seconds = parse_duration(Alerts().detection_budget).total_seconds() / factor
    return f"{seconds:g}s"


class ServeProcess:
    """``rollout serve`` as its own process (the real command line), stopped by its pid."""

    def __init__(
        self,
        workdir: Path,
        repo: Path,
        stack: str,
        token: str,
        *,
        plan_path: Path | None = None,
        apply_args: tuple[str, ...] = ("--no-apply",),
        env: dict[str, str] | None = None,
        collect_interval: str = "1s",
    ) -> None:
        self.port = free_port()
        self.log_path = workdir / "serve.log"
        command = [
            sys.executable, "-m", "rollout_policies.cli.main", "serve",
            "--listen", f"{HOST}:{self.port}", "--repo", str(repo), "--stack", stack,
            "--token-env", TOKEN_ENV, *apply_args, "--actor", "rollout-serve@test",
            "--collect-interval", collect_interval,
        ]  # fmt: skip
        if plan_path is not None:
            command += ["--plan", str(plan_path)]
        full_env = {**(env if env is not None else os.environ), TOKEN_ENV: token}
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        deadline = time.monotonic() + 120  # several lanes start at once on a busy machine
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rollout serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("rollout serve did not answer /healthz in 120s")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


class AlertingLane:
    """Remote, simulator, Prometheus, Alertmanager and ``rollout serve``, wired as in production."""

    def __init__(
        self,
        root: Path,
        plan: Plan,
        *,
        weights: WeightSource | None = None,
        sessions_per_second: float = 20.0,
        evaluation_interval: str = "1s",
        group_interval: str = "1s",
        seed: int | None = None,
        remote: GitRemote | None = None,
        stack: str = STACK,
        region: str = REGION,
        serve_apply: tuple[str, ...] = ("--no-apply",),
        serve_env: dict[str, str] | None = None,
        detection_budget: str | None = None,
        missing_data_for: str | None = None,
        notify_url: str | None = None,
        moto: MotoServer | None = None,
        controller_env: Callable[[AlertingLane], Mapping[str, str]] | None = None,
    ) -> None:
        self.root = root
        # Given: serve's provider variables come from it (called once moto and the simulation run),
        # e.g. the environment of the controller's declared Deployment, instead of provider_env().
        self.controller_env = controller_env
        self.plan = plan
        self.detection_budget = detection_budget
        self.missing_data_for = missing_data_for
        self.notify_url = notify_url
        self.given_moto = moto
        self.weights = weights or FixedSplit(50.0, 50.0)
        self.sessions_per_second = sessions_per_second
        self.evaluation_interval = evaluation_interval
        self.group_interval = group_interval
        self.seed = seed
        self.given_remote = remote
        self.stack = stack
        self.region = region
        self.serve_apply = serve_apply
        self.serve_env = serve_env
        self.token = secrets.token_urlsafe(24)
        self._stack = ExitStack()

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def provider_env(self) -> dict[str, str]:
        """The controller's ``ROLLOUT_*`` provider variables for this lane's service (docs/providers.md)."""
        credentials = self.moto.credentials
        return {
            "ROLLOUT_JSON_BASE_URLS": f"crash_reporter={self.simulation.crash_reporter.url}",
            "ROLLOUT_CLOUDWATCH_ENDPOINT_URL": self.moto.endpoint_url,
            "AWS_REGION": credentials["region_name"],
            "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
        }

    def _start(self) -> None:
        root = self.root
        self.remote = self.given_remote or GitRemote(root)
        self.clone = self.remote.clone(root / "serve-clone", "serve")
        if self.given_moto is None:
            self.moto = MotoServer(root / "moto")
            self._stack.callback(self.moto.stop)
            self.moto.start()
        else:
            self.moto = self.given_moto
        self.simulation = Simulation(
            self.weights,
            sessions_per_second=self.sessions_per_second,
            seed=self.seed,
            cloudwatch=self.moto.client("cloudwatch"),
        )
        self._stack.callback(self.simulation.stop)
        self.simulation.start()
        provider_env = self.controller_env(self) if self.controller_env is not None else self.provider_env()
        env = {**(self.serve_env if self.serve_env is not None else os.environ), **provider_env}
        self.serve = ServeProcess(
            root, self.clone, self.stack, self.token, apply_args=self.serve_apply, env=env
        )
        self._stack.callback(self.serve.stop)
        token_file = self.token_file = root / "webhook.token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        self.alertmanager = Alertmanager(
            root / "alertmanager",
            alertmanager_config(
                f"{self.serve.url}/alerts",
                token_file,
                group_wait="0s",
                group_interval=self.group_interval,
                repeat_interval="1h",
                service=self.plan.service,
                notify_url=self.notify_url,
            ),
        )
        self._stack.callback(self.alertmanager.stop)
        self.alertmanager.start()
        rules = [
            write_trigger_rules(
                root / "triggers.rules.json",
                self.plan,
                {self.stack: self.region},
                interval=self.evaluation_interval,
                detection_budget=self.detection_budget,
                missing_data_for=self.missing_data_for,
            ),
        ]
        self.prometheus = Prometheus(
            root / "prometheus",
            [*self.simulation.targets, self.serve.target],
            rules,
            self.alertmanager.url,
            evaluation_interval=self.evaluation_interval,
        )
        self._stack.callback(self.prometheus.stop)
        self.prometheus.start()

    def query(self, promql: str) -> list[dict[str, object]]:
        body = httpx.get(f"{self.prometheus.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def wait_for_traffic(self, timeout: float = 30.0) -> None:
        """Until Prometheus has rates for the candidate (two scrapes with traffic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.query('sum(rate(http_server_requests_total{track="candidate"}[1m])) > 0'):
                return
            time.sleep(0.5)
        raise TimeoutError(f"no candidate traffic in Prometheus after {timeout:g}s")

    def wait_for_rollback(self, timeout: float, poll: float = 0.2) -> str | None:
        """The first commit on the remote's main after the seed, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.remote.head() != self.remote.seeded:
                return self.remote.head()
            time.sleep(poll)
        return None

    def firing(self) -> list[str]:
        return [str(r["metric"].get("alertname")) for r in self.query('ALERTS{alertstate="firing"}')]  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


FAULTS: dict[str, dict[str, object]] = {
    # trigger id -> the fault injected into green that should set it off
    "crash-rate": {"crash_rate": 0.5},
    "api-error-rate": {"error_rate": 0.5},
    "load-balancer-failures": {"latency_ms": 1500.0},
    "database-connection-loss": {"db_down": True},
}


def window_of(plan: Plan, trigger_id: str) -> timedelta:
    return next(t.window for t in plan.triggers if t.id == trigger_id)


# -- the local environment (kwok API servers, Pulumi file backend) -------------------------------------

LOCAL_NAMESPACE = "markethub"


def route_weights(kubeconfig: Path | str, service: str, namespace: str = LOCAL_NAMESPACE) -> dict[str, float]:
    """The weighted rule of the service's HTTPRoute on an API server, by colour."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    route = api.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", service
    )
    for rule in route["spec"]["rules"]:
        if not any(match.get("headers") for match in rule.get("matches", [])):
            return {
                ref["name"].rsplit("-", 1)[-1]: float(ref.get("weight", 1)) for ref in rule["backendRefs"]
            }
    return {}


def set_candidate_weight(config_path: Path, green: int) -> None:
    """Edit a stack config's rollout block to the limited stage's first step with green at ``green``%
    (and no longer rolled back, as the next promotion would write it)."""
    from rollout_policies.gitops.stack_config import read_state

    state = read_state(config_path)
    text = config_path.read_text()
    blue_now, green_now = state.weights[Colour.BLUE], state.weights[Colour.GREEN]
    for old, new in (
        (f"stage: {state.stage}", "stage: limited"),
        (f"step: {state.step}", "step: 0"),
        (f"blue: {blue_now}", f"blue: {100 - green}"),
        (f"green: {green_now}", f"green: {green}"),
        ("rolledBack: true", "rolledBack: false"),  # a rolled-back stack going forward again
    ):
        text = text.replace(f"    {old}\n", f"    {new}\n", 1).replace(f"      {old}\n", f"      {new}\n", 1)
    config_path.write_text(text)
    if read_state(config_path).weights != {Colour.BLUE: 100 - green, Colour.GREEN: green}:
        raise RuntimeError(f"{config_path}: could not set green to {green}%")


class LocalDeployment:
    """This project's HEAD on a bare remote, one shipped local stack deployed at green 2% with Pulumi."""

    def __init__(self, info: EnvInfo, base: Path, project: Path, stack: str, region: str) -> None:
        from rollout_policies.gitops.seams import AutomationApplier

        self.info, self.stack, self.region = info, stack, region
        self.remote, self.work = base / "remote.git", base / "work"
        base.mkdir(parents=True, exist_ok=True)
        git(base, "init", "-q", "--bare", "-b", "main", str(self.remote))
        git(project, "push", "-q", str(self.remote), "HEAD:refs/heads/main")
        subprocess.run(
            ["git", "clone", "-q", str(self.remote), str(self.work)], check=True, capture_output=True
        )
        git(self.work, "config", "user.email", "e2e@markethub.local")
        git(self.work, "config", "user.name", "e2e")
        path = self.config_path
        path.write_text(path.read_text() + f"  kubernetes:kubeconfig: {info.kubeconfig(region)}\n")
        self.env = {**os.environ, **info.pulumi_env(), **info.aws_env(region)}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        self.applier = AutomationApplier(self.work, lambda stack: dict(self.env))
        self.applier.stack(stack)  # `pulumi stack init` writes the stack's encryption salt into its config
        self.reset(message="local stack on this environment's cluster, green at 2%")

    @property
    def config_path(self) -> Path:
        return self.work / f"Pulumi.{self.stack}.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.info.kubeconfig(self.region)

    def reset(self, message: str = "back to green 2% for the next run") -> None:
        """Green at 2% on main and live (commit, push, ``pulumi up``)."""
        git(self.work, "pull", "-q", "--ff-only", "origin", "main")
        set_candidate_weight(self.config_path, 2)
        git(self.work, "commit", "-qam", message)
        git(self.work, "push", "-q", "origin", "main")
        self.applier.stack(self.stack).up(color="never")
        # A stack that already existed in the shared backend (an earlier test's) gets its passphrase
        # salt written by this `up`, not by `stack init`: commit it, or the next pull refuses to run.
        if git(self.work, "status", "--porcelain").strip():
            git(self.work, "commit", "-qam", "pulumi: the stack's encryption salt")
            git(self.work, "push", "-q", "origin", "main")

    def live(self) -> dict[str, float]:
        return route_weights(self.kubeconfig, "markethub-mobile")

    def destroy(self) -> None:
        from pulumi import automation as auto

        with contextlib.suppress(auto.CommandError):
            self.applier.stack(self.stack).destroy(color="never")
