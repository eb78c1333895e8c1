"""Both drills with --execute on the local two-region environment, through the `rollout` command line.

Real: two Kubernetes control planes (kwok nodes make the Deployments Available), the moto server of
the environment for S3 and Route 53, the environment's PostgreSQL archiving WAL to pgBackRest (S3 on
moto through the rig's TLS front), pgBackRest's backup and point-in-time restore, git. Stand-ins, and why:
- the regions' HTTP endpoints are loopback servers (``devenv.health_standin``): no pod really serves HTTP on
  kwok's fake nodes;
- Velero: the environment has Velero's CRDs but no Velero server. This test writes the velero.io/v1
  Backup with phase Completed, as Velero's schedule would, and runs a kwok controller of its own with
  only the Stage in ``kwok-velero-stages.yaml``, which moves a new Restore to phase Completed, as the
  Velero server would. kwok is the simulator the local clusters already use for nodes and pods.
  Velero's own restore logic is therefore not exercised here; the drill's handling of it is.

Each region's HTTPRoute and flags ConfigMap are the Pulumi program's own manifests for a plan step
(``infra.traffic``, ``infra.flags``), applied to both API servers, so the failover drill's
regions-agree check reads real objects at 10%, 30% and 50%.

Set DRILL_REPORT_DIR to keep the reports (docs/drills.md quotes figures from such a run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from drill_helpers import PRIMARY, SECONDARY, Regions, run
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from devenv.local import LocalEnvironment
from devenv.pytest_fixtures import local_env  # the session's environment
from devenv.tools import tool
from infra.flags import FlagsArgs, flags_manifest
from infra.traffic.gateway_api import GatewayApiRouter
from infra.traffic.split import TrafficSplitArgs, route_spec
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.state import Colour, Release, RolloutState
from runbooks.region_failover import FailoverDns

pytestmark = pytest.mark.e2e
__all__ = ["local_env"]

# Its own namespace: other end-to-end tests deploy the service into the same clusters.
NAMESPACE = "markethub-drill"
STAGES = Path(__file__).with_name("kwok-velero-stages.yaml")
ROOT = Path(__file__).resolve().parents[2]


def api(kubeconfig: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kubeconfig)


def openapi_paths(kubeconfig: str) -> set[str]:
    with api(kubeconfig) as kube:
        data = kube.call_api("/openapi/v3", "GET", response_type="object", _return_http_data_only=True)
    return set((data or {}).get("paths", {}))


def deploy(kubeconfig: str, name: str, replicas: int) -> None:
    labels = {"app": name}
    with api(kubeconfig) as kube:
        try:
            client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata={"name": NAMESPACE}))
        except ApiException as err:
            if err.status != 409:
                raise
        client.AppsV1Api(kube).create_namespaced_deployment(
            NAMESPACE,
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1DeploymentSpec(
                    replicas=replicas,
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(
                            containers=[client.V1Container(name=name, image="markethub:4.12.0")]
                        ),
                    ),
                ),
            ),
        )


SERVICE = "markethub-mobile"
SPLIT_STEPS = [("limited", 2, 10), ("medium", 0, 30), ("majority", 0, 50)]


def serve_step(kubeconfig: str, stage_id: str, step: int) -> None:
    """Apply the program's HTTPRoute and flags ConfigMap for a step of the packaged plan."""
    stage = load_plan(DEFAULT_PLAN).stage(stage_id)
    weight = stage.steps[step].weight
    moment = datetime(2026, 11, 20, 9, tzinfo=UTC)
    state = RolloutState(
        stage=stage_id,
        step=step,
        stable=Release(colour=Colour.BLUE, version="4.12.0"),
        candidate=Release(colour=Colour.GREEN, version="5.0.0"),
        weights={Colour.BLUE: 100 - weight, Colour.GREEN: weight},
        stageStartedAt=moment,
        stepStartedAt=moment,
    )
    args = TrafficSplitArgs(SERVICE, NAMESPACE, 8080, state, "plan.yaml", "x-markethub-cohort", "beta")
    (route,) = GatewayApiRouter().manifests(route_spec(args))
    flags = flags_manifest(FlagsArgs(SERVICE, NAMESPACE, stage))
    with api(kubeconfig) as kube:
        custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
        for delete in (
            lambda: custom.delete_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", SERVICE
            ),
            lambda: core.delete_namespaced_config_map(f"{SERVICE}-flags", NAMESPACE),
        ):
            try:
                delete()
            except ApiException as err:
                if err.status != 404:
                    raise
        custom.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", route
        )
        core.create_namespaced_config_map(NAMESPACE, flags)


def wait_available(kubeconfig: str, name: str, replicas: int) -> None:
    with api(kubeconfig) as kube:
        apps = client.AppsV1Api(kube)
        Retrying(stop=stop_after_delay(120), wait=wait_fixed(1), retry=retry_if_result(lambda ok: not ok))(
            lambda: (apps.read_namespaced_deployment_status(name, NAMESPACE).status.available_replicas or 0)
            >= replicas
        )


@pytest.fixture(scope="module")
def workloads(local_env: LocalEnvironment) -> Iterator[dict[str, str]]:
    """The service's Deployments in both regions, Available; a Completed Velero Backup in the primary."""
    kubeconfigs = {region: info.kubeconfig for region, info in local_env.info.regions.items()}
    for kubeconfig in kubeconfigs.values():
        deploy(kubeconfig, "markethub-api", 2)
    for kubeconfig in kubeconfigs.values():
        wait_available(kubeconfig, "markethub-api", 2)
    with api(kubeconfigs[PRIMARY]) as kube:
        try:
            client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata={"name": "velero"}))
        except ApiException as err:
            if err.status != 409:
                raise
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            "velero.io",
            "v1",
            "velero",
            "backups",
            {
                "apiVersion": "velero.io/v1",
                "kind": "Backup",
                "metadata": {"name": "markethub-daily-e2e", "namespace": "velero"},
                "spec": {"includedNamespaces": [NAMESPACE]},
                "status": {"phase": "Completed", "completionTimestamp": stamp},
            },
        )
    yield kubeconfigs
    for kubeconfig in kubeconfigs.values():
        with api(kubeconfig) as kube:
            client.CoreV1Api(kube).delete_namespace(NAMESPACE)


@pytest.fixture(scope="module")
def velero_standin(workloads: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A kwok controller playing the Velero server's part for Restores on the primary (see the docstring)."""
    kubeconfig = workloads[PRIMARY]
    # kwok reads the CRD's OpenAPI schema when it starts; wait until the API server publishes it.
    Retrying(stop=stop_after_delay(60), wait=wait_fixed(1), retry=retry_if_result(lambda ok: not ok))(
        lambda: "apis/velero.io/v1" in openapi_paths(kubeconfig)
    )
    log = (tmp_path_factory.mktemp("velero-standin") / "kwok.log").open("w")
    process = subprocess.Popen(
        [str(tool("kwok")), "--kubeconfig", kubeconfig, "--config", str(STAGES),
         "--manage-single-node", "none", "--server-address", "127.0.0.1:0"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def report_dir(tmp_path: Path) -> Path:
    return Path(os.environ.get("DRILL_REPORT_DIR") or tmp_path / "drills")


def test_both_drills_with_execute_on_the_local_environment(
    local_env: LocalEnvironment,
    workloads: dict[str, str],
    velero_standin: None,
    regions: Regions,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = ["--env", str(local_env.env_file)]
    bucket: list[str] = []  # the environment's pgBackRest repository (env.json)
    reports = report_dir(tmp_path)
    with psycopg.connect(local_env.info.database["dsn"]) as conn:
        for table in load_plan(DEFAULT_PLAN).objectives.disaster_recovery.verify_tables:
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (id int PRIMARY KEY, payload text)')
            conn.execute(f'INSERT INTO "{table}" SELECT g, md5(g::text) FROM generate_series(1, 300) g '
                         "ON CONFLICT DO NOTHING")  # fmt: skip

    code, out, err = run(["drill", "backup", "--type", "full", *env], capsys)
    assert code == 0, out + err

    failover = ["drill", "region-failover", "--execute", *env, *bucket, "--namespace", NAMESPACE,
                "--service", SERVICE, "--zone", regions.zone, "--record", regions.record,
                "--stacks-dir", str(tmp_path),
                "--endpoint", f"{PRIMARY}={regions.primary.url}",
                "--endpoint", f"{SECONDARY}={regions.secondary.url}"]  # fmt: skip
    route53 = _moto_client(local_env, "route53")
    for stage_id, step, weight in SPLIT_STEPS:
        for kubeconfig in workloads.values():
            serve_step(kubeconfig, stage_id, step)
        folder = reports / f"at-{weight}"
        code, out, err = run([*failover, "--ensure-records", "--report-dir", str(folder)], capsys)
        assert code == 0, out + err
        assert "region-failover: passed" in out
        report = _latest_report(folder / "region-failover")
        assert report["verdict"] == "passed"
        assert report["objectives"][0]["met"] is True
        agree = next(s for s in report["steps"] if s["name"] == "preflight-regions-agree")
        assert f"blue {100 - weight}% / green {weight}%" in agree["detail"]
        records = FailoverDns(route53, regions.zone, regions.record).records()
        assert {r.region: r.role for r in records.values()} == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}

        # A fault injected mid-drill (after the secondary took the traffic) ends with DNS on the primary.
        code, out, err = run(
            [
                *failover,
                "--inject-fault",
                "verify-secondary-serves",
                "--report-dir",
                str(tmp_path / f"fault-{weight}"),
            ],
            capsys,
        )
        assert code == 1, out + err
        assert "automatic-failback" in out
        dns = FailoverDns(route53, regions.zone, regions.record)
        assert {r.region: r.role for r in dns.records().values()} == {
            PRIMARY: "PRIMARY",
            SECONDARY: "SECONDARY",
        }
        assert dns.answer() == PRIMARY

    # Regions out of step: the drill refuses before DNS and names what differs.
    serve_step(workloads[SECONDARY], "medium", 0)
    code, out, err = run([*failover, "--report-dir", str(tmp_path / "apart")], capsys)
    assert code == 1, out + err
    apart = _latest_report(tmp_path / "apart" / "region-failover")
    refused = next(s for s in apart["steps"] if s["name"] == "preflight-regions-agree")
    assert (
        "weights: us-east-1 serves blue 50% / green 50%, us-west-2 blue 70% / green 30%" in refused["detail"]
    )
    assert "dns-failover" not in [s["name"] for s in apart["steps"]]

    code, out, err = run(
        ["drill", "backup-restore", "--execute", *env, *bucket,
         "--namespace", NAMESPACE, "--velero-wait", "30", "--report-dir", str(reports)],
        capsys,
    )  # fmt: skip
    assert code == 0, out + err
    assert "backup-restore: passed" in out
    restore = _latest_report(reports / "backup-restore")
    assert [step["status"] for step in restore["steps"]] == ["passed"] * 9
    assert {o["name"]: o["met"] for o in restore["objectives"]} == {
        "RPO (source's newest commit - newest restored)": True,
        "RTO (restore to verified)": True,
    }
    with api(workloads[PRIMARY]) as kube:
        restores = client.CustomObjectsApi(kube).list_namespaced_custom_object(
            "velero.io", "v1", "velero", "restores"
        )
    spec = restores["items"][0]["spec"]
    assert spec["backupName"] == "markethub-daily-e2e"
    assert spec["namespaceMapping"][NAMESPACE].startswith("drill-restore-")


def _moto_client(local_env: LocalEnvironment, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=local_env.info.moto_url,
        region_name=PRIMARY,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _latest_report(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sorted(folder.glob("*.json"))[-1].read_text())
    return data


def test_the_scheduled_failover_drill_run_as_its_cronjob_declares_commits_its_report(
    local_env: LocalEnvironment,
    workloads: dict[str, str],
    plan_db: str,
    regions: Regions,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shipped prod-us-east-1 stack with this environment's addresses, rendered by the program
    under Pulumi mocks; the region-failover CronJob's command and env run as a process (no container
    starts on kwok nodes), its kubeconfig Secret mounted as a folder, while traffic is split 50/50."""
    import yaml
    from wiring.shipped import rendered_cronjobs

    from infra.drills import KUBECONFIG_MOUNT
    from rollout_policies.gitops.stack_config import render_config_mapping
    from runbooks.region_failover import FailoverTarget, RegionTarget, ensure_failover_records

    # The rollout repository the reports are pushed to (main exists, as in a team's repository).
    remote = tmp_path / "rollout.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "-q", str(remote), str(seed)], check=True, capture_output=True)
    who = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", *who, "commit", "-q", "--allow-empty", "-m", "start"], cwd=seed, check=True)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=seed, check=True)

    # The kubeconfig Secret: one context per region, named as the stack's failover.kubeContexts say.
    merged: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "contexts": [],
        "users": [],
    }
    contexts = {}
    for region, path in workloads.items():
        config_data = yaml.safe_load(Path(path).read_text())
        for key in ("clusters", "contexts", "users"):
            merged[key] += config_data[key]
        contexts[region] = config_data["current-context"]
    secret_dir = tmp_path / "secret-kubeconfig"
    secret_dir.mkdir()
    (secret_dir / "config").write_text(yaml.safe_dump(merged))

    # The environment's database archives to pgBackRest in the local stack's bucket (env.json).
    from infra.settings import settings_from_stack_file

    bucket = settings_from_stack_file(ROOT / "Pulumi.local-us-east-1.yaml").backup.bucket
    shipped = (ROOT / "Pulumi.prod-us-east-1.yaml").read_text()
    text = (
        shipped.replace(
            "markethub-rollout:namespace: markethub\n", f"markethub-rollout:namespace: {NAMESPACE}\n"
        )
        .replace(
            "bucket: markethub-backups-us-east-1\n",
            f"bucket: {bucket}\n    s3Endpoint: {local_env.info.database['s3_endpoint']}\n",
        )
        .replace("zone: markethub.example.\n", f"zone: {regions.zone}\n")
        .replace("    hostname: api.markethub.example\n", f"    hostname: {regions.record.rstrip('.')}\n")
    ) + f"  markethub-rollout:drills:\n    kubeconfigSecret: kube\n    reportsRepository: {remote}\n"
    source = "Pulumi.prod-us-east-1.yaml"
    urls = {PRIMARY: regions.primary.url, SECONDARY: regions.secondary.url}
    text = render_config_mapping(text, "markethub-rollout:failover", "probeUrls", urls, source)
    text = render_config_mapping(text, "markethub-rollout:failover", "kubeContexts", contexts, source)
    stack_dir = tmp_path / "stacks"
    stack_dir.mkdir()
    stack_file = stack_dir / source
    stack_file.write_text(text)
    (job,) = [j for j in rendered_cronjobs(stack_file) if j.name.endswith("drill-region-failover")]

    # What production has before a drill: a fresh backup, the failover records, traffic split 50/50.
    code, out, err = run(["drill", "backup", "--type", "full", "--env", str(local_env.env_file)], capsys)
    assert code == 0, out + err
    target = FailoverTarget(
        zone=regions.zone,
        record=regions.record,
        regions={
            e.region: RegionTarget(f"{e.region}.{regions.record}", e.url)
            for e in (regions.primary, regions.secondary)
        },
        service=SERVICE,
    )
    ensure_failover_records(_moto_client(local_env, "route53"), target, PRIMARY)
    for kubeconfig in workloads.values():
        serve_step(kubeconfig, "majority", 0)

    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for item in job.env:
        if "value" in item:
            env[item["name"]] = str(item["value"]).replace(KUBECONFIG_MOUNT, str(secret_dir))
        else:  # the git token Secret: a local remote needs none
            env[item["name"]] = ""
    pod = tmp_path / "pod"
    pod.mkdir()
    done = subprocess.run(job.argv, cwd=pod, env=env, capture_output=True, text=True, timeout=600)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "region-failover: passed" in output
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", "main"], cwd=remote, check=True,
                            capture_output=True, text=True).stdout.split()  # fmt: skip
    pushed = [p for p in listed if p.startswith("reports/drills/region-failover/")]
    assert sorted(Path(p).suffix for p in pushed) == [".html", ".json", ".md"], listed
    data = next(p for p in pushed if p.endswith(".json"))
    shown = subprocess.run(
        ["git", "show", f"main:{data}"], cwd=remote, check=True, capture_output=True, text=True
    )
    report = json.loads(shown.stdout)
    assert report["verdict"] == "passed"
    assert report["objectives"][0]["name"] == "time to recovery (RTO)"
    assert report["objectives"][0]["limit_seconds"] == 1800  # the plan's RTO beside the measured time
