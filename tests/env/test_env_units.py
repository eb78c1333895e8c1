"""Fast checks of the environment's plain parts: env.json round trip, port picking, Pulumi error lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.cluster import ClusterPorts, KwokCluster
from devenv.local import EnvInfo, LocalEnvironment, RegionInfo
from devenv.pulumi_runner import first_error
from rollout_policies.errors import UserError

# The CLI's output for a Deployment whose pods never schedule (captured from pulumi 3.260.0 and
# pulumi-resource-kubernetes 4.25.0 on the local environment; test_pulumi_e2e.py produces it live).
FAILED_UP = """\
Updating (probe):
 +  kubernetes:apps/v1:Deployment web creating (10s) error: 3 errors occurred:
 +  kubernetes:apps/v1:Deployment web **creating failed** error: 3 errors occurred:
 +  pulumi:pulumi:Stack markethub-env-e2e-probe creating (13s) error: update failed
Diagnostics:
  kubernetes:apps/v1:Deployment (web):
    error: 3 errors occurred:
    \t* resource "urn:pulumi:probe::markethub-env-e2e::kubernetes:apps/v1:Deployment::web" was successfully \
created, but the Kubernetes API server reported that it failed to fully initialize or become live: \
'web' timed out waiting to be Ready
    \t* [MinimumReplicasUnavailable] Deployment does not have minimum availability.

  pulumi:pulumi:Stack (markethub-env-e2e-probe):
    warning: using pulumi-resource-kubernetes from $PATH
    error: update failed
"""


def test_first_error_names_the_resource_and_its_cause() -> None:
    assert (
        first_error(FAILED_UP) == "kubernetes:apps/v1:Deployment (web): 'web' timed out waiting to be Ready"
    )


def test_first_error_falls_back_to_the_last_error_line() -> None:
    assert first_error("Updating\nerror: no stack named 'x' found\n") == "error: no stack named 'x' found"
    assert first_error("") == "no output"


def test_env_json_round_trips(tmp_path: Path) -> None:
    region = RegionInfo(
        "us-east-1", "/k/kubeconfig.yaml", "https://127.0.0.1:1", "/k", {"etcd": 2}, {"etcd": 3}, ["n0"]
    )
    info = EnvInfo(
        state_dir=str(tmp_path), regions={"us-east-1": region}, pulumi_backend_url="file:///b",
        pulumi_home="/h", pulumi_passphrase="p", git_remote="/g", moto_url="http://127.0.0.1:4",
        moto_pid=5, tools_bin="/t", started_at=1.0,
    )  # fmt: skip
    assert EnvInfo.from_json(info.to_json()) == info
    assert info.kubeconfig("us-east-1") == Path("/k/kubeconfig.yaml")
    with pytest.raises(UserError, match="unknown region 'eu-west-1': the local environment has us-east-1"):
        info.kubeconfig("eu-west-1")


def test_a_broken_env_json_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "env.json").write_text("{not json")
    with pytest.raises(UserError, match=r"env.json: not a valid environment description"):
        LocalEnvironment(tmp_path).load()


def test_picked_ports_are_distinct() -> None:
    ports = ClusterPorts.pick().as_dict()
    assert len(set(ports.values())) == len(ports) == 6


@pytest.mark.parametrize("name", ["US_EAST", "east-", ""])
def test_region_names_must_be_cluster_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="a cluster name must be lower-case letters, digits and '-'"):
        KwokCluster(name, tmp_path)


def test_regions_must_not_repeat(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--region: regions repeat"):
        LocalEnvironment(tmp_path, regions=["us-east-1", "us-east-1"])


def test_env_up_looks_each_regions_tools_up_once_and_starts_with_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`env up` checks every region's tools before starting any; each cluster then starts with the
    binaries found, not a second lookup. (The start is cut short here: no control plane runs.)"""
    asked: list[str] = []

    def tool(name: str) -> Path:
        asked.append(name)
        return tmp_path / "bin" / name

    started: list[tuple[str, dict[str, Path] | None]] = []

    class Stop(Exception):
        pass

    def start(self: KwokCluster, binaries: dict[str, Path] | None = None) -> KwokCluster:
        started.append((self.name, binaries))
        raise Stop

    monkeypatch.setattr("devenv.cluster.tool", tool)
    monkeypatch.setattr(KwokCluster, "start", start)
    env = LocalEnvironment(tmp_path / "env", regions=("us-east-1", "us-west-2"))
    with pytest.raises(Stop):
        env._start(lambda line: None)

    per_region = len(asked) // 2
    assert asked[:per_region] == asked[per_region:] and "kube-apiserver" in asked[:per_region]
    assert started == [("us-east-1", env.clusters["us-east-1"].binaries())]
