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

Set DRILL_REPORT_DIR to keep the reports (docs/drills.md quotes figures from such a run).
"""

from __future__ import annotations

import json
import os
import subprocess
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
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from runbooks.region_failover import FailoverDns

pytestmark = pytest.mark.e2e
__all__ = ["local_env"]

# Its own namespace: other end-to-end tests deploy the service into the same clusters.
NAMESPACE = "markethub-drill"
STAGES = Path(__file__).with_name("kwok-velero-stages.yaml")


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

    code, out, err = run(
        ["drill", "region-failover", "--execute", *env, *bucket, "--ensure-records", "--namespace", NAMESPACE,
         "--zone", regions.zone, "--record", regions.record, "--stacks-dir", str(tmp_path),
         "--endpoint", f"{PRIMARY}={regions.primary.url}",
         "--endpoint", f"{SECONDARY}={regions.secondary.url}",
         "--report-dir", str(reports)],
        capsys,
    )  # fmt: skip
    assert code == 0, out + err
    assert "region-failover: passed" in out
    route53 = _moto_client(local_env, "route53")
    records = FailoverDns(route53, regions.zone, regions.record).records()
    assert {r.region: r.role for r in records.values()} == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}
    failover = _latest_report(reports / "region-failover")
    assert failover["verdict"] == "passed"
    assert failover["objectives"][0]["met"] is True

    # A fault injected mid-failover (after the secondary took the traffic) ends with DNS on the primary.
    code, out, err = run(
        ["drill", "region-failover", "--execute", *env, *bucket, "--namespace", NAMESPACE,
         "--inject-fault", "verify-secondary-serves",
         "--zone", regions.zone, "--record", regions.record, "--stacks-dir", str(tmp_path),
         "--endpoint", f"{PRIMARY}={regions.primary.url}",
         "--endpoint", f"{SECONDARY}={regions.secondary.url}",
         "--report-dir", str(tmp_path / "fault")],
        capsys,
    )  # fmt: skip
    assert code == 1, out + err
    assert "automatic-failback" in out
    records = FailoverDns(route53, regions.zone, regions.record).records()
    assert {r.region: r.role for r in records.values()} == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}

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
