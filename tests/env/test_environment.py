"""The local environment, for real: kwokctl control planes per region, the CRDs, moto, the CLI, shutdown.

moto stands in for AWS: it is the only AWS API that can run here (the brief allows no other).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from kubernetes import client, config

from devenv.cluster import KWOK_NODE_ANNOTATION, ClusterPorts, KwokCluster
from devenv.local import DEFAULT_REGIONS, LocalEnvironment
from devenv.processes import alive
from devenv.tools import crds_dir, tools_bin
from rollout_policies.errors import UserError

pytestmark = pytest.mark.e2e

ROLLOUT = [sys.executable, "-m", "rollout_policies.cli.main"]
# Any download (kwokctl fetching a binary, a plugin install) would go through this dead proxy and
# fail; loopback traffic (the API servers, moto) is exempt.
OFFLINE = {
    **os.environ,
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def api(kubeconfig: str | Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def wait_for(condition, what: str, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it returns a truthy value; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached after {timeout:g}s")
        time.sleep(0.5)


def test_each_region_lists_its_kwok_nodes(local_env: LocalEnvironment) -> None:
    info = local_env.info
    assert sorted(info.regions) == sorted(DEFAULT_REGIONS)
    for name, region in info.regions.items():
        with api(region.kubeconfig) as kube:
            nodes = client.CoreV1Api(kube).list_node().items
        assert sorted(node.metadata.name for node in nodes) == sorted(region.nodes)
        assert len(nodes) == 3
        for node in nodes:
            assert node.metadata.annotations[KWOK_NODE_ANNOTATION] == "fake"
            assert node.metadata.labels["topology.kubernetes.io/region"] == name
            ready = [c for c in node.status.conditions if c.type == "Ready"]
            assert ready and ready[0].status == "True", node.metadata.name


def test_regions_are_separate_clusters_on_loopback(local_env: LocalEnvironment) -> None:
    info = local_env.info
    ports = [port for region in info.regions.values() for port in region.ports.values()]
    assert len(ports) == len(set(ports)), "two components share a port"
    servers = {region.server for region in info.regions.values()}
    assert len(servers) == len(info.regions)
    assert all(server.startswith("https://127.0.0.1:") for server in servers)
    # Every process of every region listens on 127.0.0.1 only, never on all interfaces.
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    pids = {pid for region in info.regions.values() for pid in region.pids.values()}
    for line in listening.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            assert line.split()[3].startswith("127.0.0.1:"), line
    # A namespace made in one region does not appear in the other.
    east, west = (info.regions[name] for name in DEFAULT_REGIONS)
    with api(east.kubeconfig) as kube:
        client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata={"name": "only-in-east"}))
    with api(west.kubeconfig) as kube:
        names = {ns.metadata.name for ns in client.CoreV1Api(kube).list_namespace().items}
    assert "only-in-east" not in names


def test_a_deployment_becomes_available(local_env: LocalEnvironment) -> None:
    region = local_env.info.regions["us-west-2"]
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=3,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
            ),
        ),
    )
    with api(region.kubeconfig) as kube:
        apps = client.AppsV1Api(kube)
        apps.create_namespaced_deployment("default", deployment)
        try:
            status = wait_for(
                lambda: (
                    s := apps.read_namespaced_deployment_status("web", "default").status
                ).available_replicas
                == 3
                and s,
                "Deployment web Available with 3 replicas",
            )
            available = [c for c in status.conditions if c.type == "Available"]
            assert available[0].status == "True"
            pods = client.CoreV1Api(kube).list_namespaced_pod("default", label_selector="app=web").items
            assert {pod.spec.node_name for pod in pods} <= set(region.nodes)
            assert all(pod.status.phase == "Running" for pod in pods)
        finally:
            apps.delete_namespaced_deployment("web", "default")


@pytest.mark.parametrize(
    ("group", "version", "plural", "kind", "spec"),
    [
        (
            "gateway.networking.k8s.io",
            "v1",
            "httproutes",
            "HTTPRoute",
            {"parentRefs": [{"name": "edge"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
        ),
        ("velero.io", "v1", "schedules", "Schedule", {"schedule": "0 */6 * * *", "template": {}}),
        (
            "monitoring.coreos.com",
            "v1",
            "prometheusrules",
            "PrometheusRule",
            {
                "groups": [
                    {"name": "rollback", "rules": [{"alert": "HighErrorRate", "expr": "vector(1) > 0"}]}
                ]
            },
        ),
    ],
)
def test_crds_are_served_in_every_region(
    local_env: LocalEnvironment, group: str, version: str, plural: str, kind: str, spec: dict[str, object]
) -> None:
    for region in local_env.info.regions.values():
        with api(region.kubeconfig) as kube:
            custom = client.CustomObjectsApi(kube)
            body = {
                "apiVersion": f"{group}/{version}",
                "kind": kind,
                "metadata": {"name": "probe"},
                "spec": spec,
            }
            custom.create_namespaced_custom_object(group, version, "default", plural, body)
            stored = custom.get_namespaced_custom_object(group, version, "default", plural, "probe")
            custom.delete_namespaced_custom_object(group, version, "default", plural, "probe")
        assert stored["kind"] == kind
        assert stored["metadata"]["uid"]
        assert set(spec) <= set(stored["spec"])
    if kind == "HTTPRoute":  # the CRD's OpenAPI schema is live: the API server filled in its defaults
        assert stored["spec"]["parentRefs"][0]["kind"] == "Gateway"


def test_env_json_describes_moto_git_and_pulumi(local_env: LocalEnvironment) -> None:
    info = local_env.info
    on_disk = json.loads(local_env.env_file.read_text())
    assert on_disk["moto_url"] == info.moto_url
    assert set(on_disk["regions"]) == set(DEFAULT_REGIONS)
    s3 = boto3.client(
        "s3", endpoint_url=info.moto_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    s3.create_bucket(Bucket="markethub-backups")
    assert "markethub-backups" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    bare = subprocess.run(
        ["git", "-C", info.git_remote, "rev-parse", "--is-bare-repository"], capture_output=True, text=True
    )
    assert bare.stdout.strip() == "true"
    assert info.pulumi_backend_url.startswith("file://")
    assert Path(info.pulumi_backend_url.removeprefix("file://")).is_dir()
    env = info.pulumi_env()
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PATH"].split(":")[0] == str(tools_bin())


def test_up_twice_keeps_the_running_environment(local_env: LocalEnvironment) -> None:
    before = local_env.info
    again = LocalEnvironment(local_env.state_dir).up()
    assert again == before
    assert all(row.running for row in local_env.status())


def test_cli_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    """`rollout env up` -> kubectl get nodes with the printed kubeconfig -> `rollout env down`."""
    state = tmp_path / "env"
    args = ["--state-dir", str(state)]
    try:
        started = subprocess.run(
            [*ROLLOUT, "env", "up", *args, "--region", "eu-west-1", "--nodes", "2"],
            capture_output=True, text=True, timeout=300, env=OFFLINE,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert "[env] region eu-west-1: starting etcd, kube-apiserver and 2 kwok nodes" in started.stderr
        assert re.search(r"\[env\] region eu-west-1: ready in \d+\.\d s", started.stderr), started.stderr
        kubeconfig = next(
            line.split("kubeconfig:")[1].strip()
            for line in started.stdout.splitlines()
            if "kubeconfig:" in line
        )
        assert f"kubectl --kubeconfig {kubeconfig} get nodes" in started.stdout
        nodes = subprocess.run(
            [str(tools_bin() / "kubectl"), "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert nodes == ["node/kwok-eu-west-1-0", "node/kwok-eu-west-1-1"]
        status = subprocess.run([*ROLLOUT, "env", "status", *args], capture_output=True, text=True)
        assert "running  cluster eu-west-1" in status.stdout
        assert "running  moto" in status.stdout
        info = json.loads((state / "env.json").read_text())
        pids = [*info["regions"]["eu-west-1"]["pids"].values(), info["moto_pid"]]
        assert all(alive(pid) for pid in pids)
    finally:
        stopped = subprocess.run(
            [*ROLLOUT, "env", "down", *args], capture_output=True, text=True, timeout=120
        )
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in pids if alive(pid)] == []
    assert not (state / "env.json").exists()
    assert (
        "environment down"
        in subprocess.run([*ROLLOUT, "env", "status", *args], capture_output=True, text=True).stdout
    )


def test_a_failed_start_leaves_no_process(tmp_path: Path) -> None:
    """The control plane starts, then a broken CRD manifest fails the start: nothing may be left."""
    crds = tmp_path / "crds"
    crds.mkdir()
    for manifest in crds_dir().glob("*.yaml"):
        (crds / manifest.name).write_text(manifest.read_text())
    (crds / "zz-broken.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
    )
    cluster = KwokCluster("broken", tmp_path / "kwok", nodes=1, crds=crds)
    seen: dict[str, int] = {}
    original = cluster._kubectl

    def remember_pids(*args: str) -> str:
        seen.update(cluster.pids())  # the control plane is up by the time the CRDs are applied
        return original(*args)

    cluster._kubectl = remember_pids  # type: ignore[method-assign]
    with pytest.raises(UserError, match="region broken: kubectl apply failed"):
        cluster.start()
    assert len(seen) == 5
    assert [pid for pid in seen.values() if alive(pid)] == []
    assert not cluster.cluster_dir.exists()


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = ClusterPorts.pick()
        ports = ClusterPorts(port, free.etcd, free.etcd_peer, free.kube_controller_manager,
                             free.kube_scheduler, free.kwok_controller)  # fmt: skip
        with pytest.raises(UserError) as raised:
            KwokCluster("busy", tmp_path / "kwok", ports=ports).start()
    assert str(raised.value) == f"region busy: port 127.0.0.1:{port} (kube_apiserver) is already taken"
    assert "\n" not in str(raised.value)


def test_a_missing_binary_is_a_one_line_error(tmp_path: Path) -> None:
    empty_cache = tmp_path / "no-tools"
    result = subprocess.run(
        [*ROLLOUT, "env", "up", "--state-dir", str(tmp_path / "env")],
        capture_output=True, text=True, env={**os.environ, "MARKETHUB_TOOLS_CACHE": str(empty_cache)},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"rollout: error: missing tool 'kube-apiserver': {empty_cache}/bin/kube-apiserver"
        " not found or not executable (run `make tools`)"
    )
    assert not (tmp_path / "env" / "env.json").exists()
