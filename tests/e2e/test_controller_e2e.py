"""End to end on the local environment: the controller as it ships, deployed and then run as declared.

1. ``pulumi up`` of a local stack with the controller on (the real CLI and Kubernetes provider, a
   real API server): the API server accepts every object of the RolloutController and the
   AlertmanagerConfig that calls it.
2. The container cannot start on kwok's fake nodes, so the test runs it as a local process with
   exactly the command, arguments and environment of the live Deployment read back from the API
   server (``devenv.pod``): ``$(POD_IP)`` filled in, every Secret reference filled from the Secret
   this test created in the cluster, the working directory an empty folder like the pod's emptyDir.
   What the image adds comes from the Dockerfile's ``ENV`` (its PATH mapped to this machine's
   virtualenv and tool cache). What the kubelet adds, in-cluster credentials for the pod's
   ServiceAccount, is a kubeconfig that impersonates that ServiceAccount, so the apply runs with
   the Role the program declares and nothing more.
3. An Alertmanager-format POST built from the live AlertmanagerConfig (its URL resolved through the
   live Service to the process, its ``httpConfig.authorization`` read from the Secret) commits the
   rollback to the real git remote and applies it to the live HTTPRoute. Without the authorization
   the same POST is refused and git does not move.
4. The process, pointed by the stack config at a crash reporter's API and the local environment's
   moto server (CloudWatch), measures the candidate's crash rate and load-balancer failures and
   exports them where the live ServiceMonitor makes Prometheus scrape.

The pod's address is a loopback address of its own (127.x.y.z), so the controller's fixed port
cannot collide with anything else on the machine. The repository is a bare git remote on disk
(``file://``): no git host can be reached here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pulumi import automation as auto

from devenv.local import EnvInfo
from devenv.pod import RunningContainer, run_deployment
from devenv.tools import path_with_tools
from rollout_policies.gitops.kube_live import route_weights
from rollout_policies.gitops.seams import AutomationApplier
from rollout_policies.gitops.stack_config import read_state, state_from_text
from rollout_policies.state import Colour
from simulator.crash_reporter import CrashReporter
from simulator.traffic import lb_dimensions

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STACK, REGION = "local-us-east-1", "us-east-1"
SERVICE = "markethub-mobile"
NAMESPACE = "controller-e2e"
CONTROLLER = f"{SERVICE}-rollout"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    env = {**os.environ, "PATH": path_with_tools(os.environ.get("PATH", "")), "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run(
        ["kubectl", *args], input=stdin, env=env, capture_output=True, text=True, timeout=180
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done.stdout


def get(kubeconfig: Path, kind: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl(kubeconfig, "-n", NAMESPACE, "get", kind, name, "-o", "json"))


@dataclass
class Deployed:
    info: EnvInfo
    kubeconfig: Path
    remote: Path
    work: Path
    env: dict[str, str]
    stack: auto.Stack
    webhook_token: str
    crash_reporter: CrashReporter

    def main_state(self) -> Any:
        git(self.work, "fetch", "-q", "origin")
        path = f"Pulumi.{STACK}.yaml"
        return state_from_text(git(self.work, "show", f"origin/main:{path}"), path)

    def main_sha(self) -> str:
        git(self.work, "fetch", "-q", "origin")
        return git(self.work, "rev-parse", "origin/main")


def _enable_controller(path: Path, remote: Path, crash_reporter_url: str, cloudwatch_url: str) -> None:
    """The local stack as a team would configure it for the controller, in this test's namespace: its
    providers point at this test's crash reporter and the local environment's moto server."""
    text = path.read_text()
    text = text.replace(
        "markethub-rollout:namespace: markethub\n", f"markethub-rollout:namespace: {NAMESPACE}\n"
    )
    text = text.replace("veleroNamespace: markethub\n", f"veleroNamespace: {NAMESPACE}\n")
    # Alertmanager's target is the controller's own Service, as in production.
    text = text.replace("  markethub-rollout:alerts:\n    webhookUrl: http://127.0.0.1:8089/alerts\n", "")
    text = text.replace(
        "  markethub-rollout:controller:\n    enabled: false\n",
        "  markethub-rollout:controller:\n"
        f"    repository: {remote.as_uri()}\n"
        "    image: ghcr.io/markethub/markethub-rollout:e2e\n"
        "    providers:\n"
        f"      jsonBaseUrls: {{crash_reporter: '{crash_reporter_url}'}}\n"
        f"      cloudwatchEndpointUrl: '{cloudwatch_url}'\n",
    )
    # The Secrets exist before the objects that reference them: the test creates the namespace.
    text += '  markethub-rollout:createNamespace: "false"\n'
    path.write_text(text)
    state = read_state(path)
    text = text.replace(f"    stage: {state.stage}\n", "    stage: limited\n")
    text = text.replace(f"    step: {state.step}\n", "    step: 1\n")
    text = text.replace(f"      blue: {state.weights[Colour.BLUE]}\n", "      blue: 95\n")
    text = text.replace(f"      green: {state.weights[Colour.GREEN]}\n", "      green: 5\n")
    path.write_text(text)
    assert read_state(path).weights == {Colour.BLUE: 95, Colour.GREEN: 5}
    settings = yaml.safe_load(text)["config"]
    assert settings["markethub-rollout:controller"]["repository"] == remote.as_uri()


def _secret(kubeconfig: Path, name: str, data: dict[str, str]) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "stringData": data,
    }
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(manifest))


@pytest.fixture(scope="module")
def deployed(local_env_info: EnvInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    base = tmp_path_factory.mktemp("controller-e2e")
    remote, work = base / "remote.git", base / "work"
    git(base, "init", "-q", "--bare", "-b", "main", str(remote))
    git(ROOT, "push", "-q", str(remote), "HEAD:refs/heads/main")
    git(base, "clone", "-q", str(remote), str(work))
    git(work, "config", "user.email", "e2e@markethub.local")
    git(work, "config", "user.name", "e2e")
    crash_reporter = CrashReporter().start()
    _enable_controller(work / f"Pulumi.{STACK}.yaml", remote, crash_reporter.url, local_env_info.moto_url)
    git(work, "commit", "-qam", "Turn the controller on in this environment")
    git(work, "push", "-q", "origin", "main")

    kubeconfig = local_env_info.kubeconfig(REGION)
    backend = base / "pulumi-backend"
    backend.mkdir()
    env = {**os.environ, **local_env_info.pulumi_env(), "KUBECONFIG": str(kubeconfig)}
    env["PULUMI_BACKEND_URL"] = backend.as_uri()
    token = secrets.token_hex(24)
    kubectl(kubeconfig, "create", "namespace", NAMESPACE)
    stack = None
    try:
        # What docs/deploy.md tells a team to create; the program only references them.
        _secret(kubeconfig, "rollout-webhook", {"token": token})
        _secret(
            kubeconfig,
            "rollout-pulumi",
            {"backend-url": backend.as_uri(), "config-passphrase": env["PULUMI_CONFIG_PASSPHRASE"]},
        )
        # moto's test keys stand for the pod's AWS identity; no analytics database runs here (the SQL
        # metrics feed gate alerts only): its DSN is a loopback port where nothing listens.
        aws = local_env_info.aws_env(REGION)
        _secret(
            kubeconfig,
            "rollout-providers",
            {
                "sql-dsn": "postgresql://analytics@127.0.0.1:9/analytics",
                "aws-access-key-id": aws["AWS_ACCESS_KEY_ID"],
                "aws-secret-access-key": aws["AWS_SECRET_ACCESS_KEY"],
            },
        )
        stack = AutomationApplier(work, lambda s: dict(env)).stack(STACK)
        result = stack.up(color="never")
        assert result.summary.result == "succeeded"
        # The first up writes the stack's encryption salt; a team commits it once.
        if git(work, "status", "--porcelain"):
            git(work, "commit", "-qam", "pulumi stack init: encryption salt")
            git(work, "push", "-q", "origin", "main")
        yield Deployed(local_env_info, kubeconfig, remote, work, env, stack, token, crash_reporter)
    finally:
        crash_reporter.stop()
        if stack is not None:
            with contextlib.suppress(auto.CommandError):
                stack.destroy(color="never")
        kubectl(kubeconfig, "delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _controller_resources(deployed: Deployed) -> list[dict[str, Any]]:
    resources = deployed.stack.export_stack().deployment["resources"]
    (component,) = [r for r in resources if r["type"] == "markethub:infra:RolloutController"]
    return [r for r in resources if r.get("parent") == component["urn"]]


def test_the_api_server_accepts_every_object_of_the_controller(deployed: Deployed) -> None:
    children = _controller_resources(deployed)
    kinds = sorted(r["outputs"]["kind"] for r in children)
    assert kinds == ["Deployment", "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor"]
    for resource in children:
        outputs = resource["outputs"]
        live = get(deployed.kubeconfig, outputs["kind"], outputs["metadata"]["name"])
        assert live["metadata"]["uid"]
    route = get(deployed.kubeconfig, "alertmanagerconfig", f"{SERVICE}-rollout")
    assert route["spec"]["receivers"][0]["webhookConfigs"][0]["httpConfig"]["authorization"][
        "credentials"
    ] == {
        "name": "rollout-webhook",
        "key": "token",
    }
    # kwok runs no containers but reports the pod; the Deployment reaches Available all the same.
    status = get(deployed.kubeconfig, "deployment", CONTROLLER)["status"]
    assert status.get("availableReplicas") == 1


def test_the_role_lets_the_service_account_do_what_the_controller_does_and_no_more(
    deployed: Deployed,
) -> None:
    account = f"system:serviceaccount:{NAMESPACE}:{CONTROLLER}"

    def can(verb: str, resource: str) -> bool:
        answer = kubectl(
            deployed.kubeconfig,
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            NAMESPACE,
            "--as",
            account,
            check=False,
        )
        return answer.strip() == "yes"

    assert can("patch", "httproutes.gateway.networking.k8s.io")
    assert can("get", "deployments.apps")
    assert not can("patch", "deployments.apps")
    assert not can("get", "secrets")
    assert not can("create", "httproutes.gateway.networking.k8s.io")


# -- the container, run as declared ------------------------------------------------------------------


@pytest.fixture(scope="module")
def controller(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningContainer]:
    """The live Deployment's serve container, run as declared (``devenv.pod.run_deployment``)."""
    running = run_deployment(
        deployed.kubeconfig, NAMESPACE, CONTROLLER, "serve", tmp_path_factory.mktemp("controller-pod")
    )
    try:
        yield running
    finally:
        running.stop()


def test_the_process_runs_the_declared_command_line(deployed: Deployed, controller: RunningContainer) -> None:
    (serve,) = get(deployed.kubeconfig, "deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"]
    assert Path(controller.argv[0]).name == serve["command"][0] == "rollout"
    assert controller.argv[1:4] == [serve["args"][0], "--listen", f"{controller.pod_ip}:8080"]
    assert controller.argv[4:] == serve["args"][3:]


def _webhook_request(
    deployed: Deployed, controller: RunningContainer, receiver: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    """Where and with which headers Alertmanager would post for this receiver of the live config."""
    (webhook,) = receiver["webhookConfigs"]
    url = urlsplit(webhook["url"])
    service_name, namespace, *_ = (url.hostname or "").split(".")
    assert namespace == NAMESPACE
    service = get(deployed.kubeconfig, "service", service_name)
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    (serve,) = get(deployed.kubeconfig, "deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"]
    target = port["targetPort"]
    container_port = next(
        p["containerPort"] for p in serve["ports"] if target in (p["name"], p["containerPort"])
    )
    headers = {"Content-Type": "application/json"}
    authorization = webhook.get("httpConfig", {}).get("authorization")
    if authorization is not None:
        ref = authorization["credentials"]
        secret = get(deployed.kubeconfig, "secret", ref["name"])
        value = base64.b64decode(secret["data"][ref["key"]]).decode()
        headers["Authorization"] = f"{authorization.get('type', 'Bearer')} {value}"
    return f"http://{controller.pod_ip}:{container_port}{url.path}", headers


def _notification(deployed: Deployed, route: dict[str, Any]) -> dict[str, Any]:
    """A version-4 notification of the crash-rate trigger, labelled as the live rule labels it."""
    rules = get(deployed.kubeconfig, "prometheusrule", f"{SERVICE}-rollback-triggers")
    (rule,) = [r for r in rules["spec"]["groups"][0]["rules"] if r["alert"] == "RollbackCrashRate"]
    labels = {"alertname": rule["alert"], **rule["labels"]}
    # The route takes it: the operator's namespace matcher, the top matchers, the rollback child.
    assert labels["namespace"] == NAMESPACE
    for matcher in route["matchers"] + route["routes"][0]["matchers"]:
        assert labels[matcher["name"]] == matcher["value"]
    started = (datetime.now(UTC) - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    return {
        "version": "4",
        "groupKey": '{}/{rollout_action="rollback"}:{alertname="RollbackCrashRate"}',
        "status": "firing",
        "receiver": f"{NAMESPACE}/{SERVICE}-rollout/rollout-webhook",
        "groupLabels": {"alertname": rule["alert"], "rollout_stack": labels["rollout_stack"]},
        "commonLabels": labels,
        "commonAnnotations": rule["annotations"],
        "externalURL": "http://alertmanager.local",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": rule["annotations"],
                "startsAt": started,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph?g0.expr=crash",
                "fingerprint": secrets.token_hex(8),
            }
        ],
    }


def _live_route_and_receiver(deployed: Deployed) -> tuple[dict[str, Any], dict[str, Any]]:
    config = get(deployed.kubeconfig, "alertmanagerconfig", f"{SERVICE}-rollout")["spec"]
    route = config["route"]
    rollback_route = next(
        r
        for r in route["routes"]
        if {"name": "rollout_action", "value": "rollback", "matchType": "="} in r.get("matchers", [])
    )
    receiver = next(r for r in config["receivers"] if r["name"] == rollback_route["receiver"])
    return route, receiver


def test_alertmanager_without_the_token_is_refused_and_git_does_not_move(
    deployed: Deployed, controller: RunningContainer
) -> None:
    route, receiver = _live_route_and_receiver(deployed)
    (webhook,) = receiver["webhookConfigs"]
    unauthenticated = {
        **receiver,
        "webhookConfigs": [{k: v for k, v in webhook.items() if k != "httpConfig"}],
    }
    url, headers = _webhook_request(deployed, controller, unauthenticated)
    assert "Authorization" not in headers
    before = deployed.main_sha()
    answer = httpx.post(url, json=_notification(deployed, route), headers=headers, timeout=30)
    assert answer.status_code == 401
    assert deployed.main_sha() == before


def test_an_authenticated_alert_commits_the_rollback_and_applies_it(
    deployed: Deployed, controller: RunningContainer
) -> None:
    route, receiver = _live_route_and_receiver(deployed)
    url, headers = _webhook_request(deployed, controller, receiver)
    before = deployed.main_sha()
    assert deployed.main_state().weights == {Colour.BLUE: 95, Colour.GREEN: 5}
    answer = httpx.post(url, json=_notification(deployed, route), headers=headers, timeout=300)
    assert answer.status_code == 200, f"{answer.text}\n{controller.log.read_text()[-3000:]}"
    assert answer.json()["result"] == "rolled-back"
    # One commit on main, by the controller, with the decision in its trailers.
    after = deployed.main_sha()
    assert git(deployed.work, "rev-list", "--count", f"{before}..{after}") == "1"
    trailers = git(deployed.work, "log", "-1", "--format=%(trailers:only,unfold)", after)
    assert "Rollout-Decision: rollback" in trailers
    assert f"Rollout-Stack: {STACK}" in trailers
    assert deployed.main_state().weights == {Colour.BLUE: 100, Colour.GREEN: 0}
    # Applied through the Pulumi CLI, as the pod's ServiceAccount: the live route serves stable.
    live = get(deployed.kubeconfig, "httproute", SERVICE)
    assert route_weights(live, SERVICE) == {Colour.BLUE: 100, Colour.GREEN: 0}


def _exported(text: str, metric: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "markethub_rollout_measurement" and sample.labels.get("metric") == metric:
                return sample.value
    return None


def test_the_process_measures_the_trigger_sources_it_is_pointed_at_and_exports_them_for_prometheus(
    deployed: Deployed, controller: RunningContainer
) -> None:
    """Crash rate from the crash reporter's API and load-balancer failures from CloudWatch (moto),
    measured by the process with the declared environment, at the address the live ServiceMonitor
    makes Prometheus scrape (its Service's port, resolved to the container port, and its path)."""
    for crashed in (True, False, True, False):  # the candidate's app: half its sessions crash
        deployed.crash_reporter.report("candidate", crashed)
    aws = deployed.info.aws_env(REGION)
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=aws["AWS_ENDPOINT_URL"],
        region_name=REGION,
        aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
    )
    dimensions = [{"Name": k, "Value": v} for k, v in lb_dimensions(SERVICE, "candidate").items()]
    cloudwatch.put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[{"MetricName": "UnHealthyHostCount", "Dimensions": dimensions, "Value": 1.0}],
    )
    monitor = get(deployed.kubeconfig, "servicemonitor", f"{SERVICE}-rollout-webhook")
    (endpoint,) = monitor["spec"]["endpoints"]
    service = get(deployed.kubeconfig, "service", f"{SERVICE}-rollout-webhook")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    (serve,) = get(deployed.kubeconfig, "deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"]
    container_port = next(p["containerPort"] for p in serve["ports"] if p["name"] == port["targetPort"])
    url = f"http://{controller.pod_ip}:{container_port}{endpoint['path']}"
    deadline = time.monotonic() + 90  # the collector measures every 15s (serve's default)
    found: dict[str, float | None] = {}
    while time.monotonic() < deadline:
        text = httpx.get(url, timeout=5).text
        found = {m: _exported(text, m) for m in ("crash_rate", "lb_unhealthy_hosts")}
        if found == {"crash_rate": 50.0, "lb_unhealthy_hosts": 1.0}:
            break
        time.sleep(1)
    assert found == {"crash_rate": 50.0, "lb_unhealthy_hosts": 1.0}, controller.log.read_text()[-3000:]
