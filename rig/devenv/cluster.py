"""One region's Kubernetes control plane: kwokctl's binary runtime on loopback, fake kwok nodes, the CRDs.

kwokctl starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok-controller from
the binaries tools/toolchain.sh built (every binary is named explicitly in the kwokctl configuration,
so kwokctl never downloads anything), on 127.0.0.1 ports picked at start. kwok-controller plays the
kubelet for a few fake Node objects, so Deployments become Available without a container runtime.

    with KwokCluster("us-east-1", state_dir / "kwok") as cluster:
        kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devenv.processes import alive, terminate
from devenv.services import HOST, free_port, port_is_free
from devenv.tools import crds_dir, path_with_tools, tool
from rollout_policies.errors import UserError

KUBE_VERSION = "v1.33.4"  # tools/versions.env KUBERNETES_VERSION; kwokctl picks component flags by it
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# The CRD kinds the product's Pulumi program creates; `wait_ready` checks each is served.
REQUIRED_CRDS = (
    "httproutes.gateway.networking.k8s.io",
    "schedules.velero.io",
    "prometheusrules.monitoring.coreos.com",
    "alertmanagerconfigs.monitoring.coreos.com",
    "servicemonitors.monitoring.coreos.com",
)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class ClusterPorts:
    """The loopback ports of one control plane's components."""

    kube_apiserver: int
    etcd: int
    etcd_peer: int
    kube_controller_manager: int
    kube_scheduler: int
    kwok_controller: int

    @classmethod
    def pick(cls) -> ClusterPorts:
        """Distinct ports nothing listens on right now."""
        chosen: list[int] = []
        while len(chosen) < len(dataclasses.fields(cls)):
            port = free_port()
            if port not in chosen:
                chosen.append(port)
        return cls(*chosen)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class KwokCluster:
    """A kwokctl cluster named after its region, its state under ``kwok_workdir/clusters/<name>``."""

    def __init__(
        self,
        name: str,
        kwok_workdir: Path | str,
        *,
        nodes: int = 3,
        ports: ClusterPorts | None = None,
        crds: Path | str | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        if not _NAME.match(name):
            raise UserError(f"region {name!r}: a cluster name must be lower-case letters, digits and '-'")
        if nodes < 1:
            raise UserError(f"region {name!r}: nodes must be at least 1, got {nodes}")
        self.name = name
        self.kwok_workdir = Path(kwok_workdir).resolve()
        self.nodes = nodes
        self.requested_ports = ports
        self.ports = ports
        self.crds = Path(crds) if crds is not None else crds_dir()
        self.ready_timeout = ready_timeout

    # -- where things are -------------------------------------------------------------------
    @property
    def cluster_dir(self) -> Path:
        return self.kwok_workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"

    @property
    def config_path(self) -> Path:
        return self.kwok_workdir / f"{self.name}.kwokctl.yaml"

    @property
    def contexts_path(self) -> Path:
        # kwokctl adds a context to this file (its default would be ~/.kube/config, which is not ours).
        return self.kwok_workdir / "kwokctl-contexts.yaml"

    @property
    def server(self) -> str:
        assert self.ports is not None
        return f"https://{HOST}:{self.ports.kube_apiserver}"

    def pids(self) -> dict[str, int]:
        """Component name -> pid, from the pid files kwokctl writes."""
        found: dict[str, int] = {}
        for pid_file in sorted((self.cluster_dir / "pids").glob("*.pid")):
            text = pid_file.read_text().strip()
            if text.isdigit():
                found[pid_file.stem] = int(text)
        return found

    def live_pids(self) -> dict[str, int]:
        """The components still running (their command line names this cluster's folder)."""
        return {name: pid for name, pid in self.pids().items() if alive(pid, str(self.cluster_dir))}

    @property
    def running(self) -> bool:
        pids = self.pids()
        return bool(pids) and len(self.live_pids()) == len(pids)

    # -- lifecycle --------------------------------------------------------------------------
    def binaries(self) -> dict[str, Path]:
        """The control plane's programs, by kwokctl's config keys; a missing tool or CRD folder is a
        one-line UserError (checked before anything starts)."""
        binaries = {
            "kubeApiserverBinary": tool("kube-apiserver"),
            "kubeControllerManagerBinary": tool("kube-controller-manager"),
            "kubeSchedulerBinary": tool("kube-scheduler"),
            "kubectlBinary": tool("kubectl"),
            "etcdBinary": tool("etcd"),
            "kwokControllerBinary": tool("kwok"),
        }
        tool("kwokctl")
        if not self.crds.is_dir() or not any(self.crds.glob("*.yaml")):
            raise UserError(f"missing CRD manifests: {self.crds} has no *.yaml (run `make tools`)")
        return binaries

    def start(self, binaries: dict[str, Path] | None = None) -> Self:
        """Create and start the cluster, add the fake nodes and the CRDs, and wait until it serves.

        ``binaries`` are ``binaries()``'s answer when the caller already asked (`rollout env up`
        checks every region's tools before starting any); otherwise they are looked up here.
        """
        binaries = binaries if binaries is not None else self.binaries()
        if self.cluster_dir.exists():
            # A leftover from a run that did not stop cleanly: its ports are stale, so start afresh.
            self.stop()
        self.ports = self.requested_ports or ClusterPorts.pick()
        for component, port in self.ports.as_dict().items():
            if not port_is_free(port):
                raise UserError(f"region {self.name}: port {HOST}:{port} ({component}) is already taken")
        self.kwok_workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._kwokctl_config(binaries))
        try:
            self._kwokctl(
                "create", "cluster", "--kubeconfig", str(self.contexts_path),
                "--wait", f"{int(self.ready_timeout)}s", timeout=self.ready_timeout + 60,
            )  # fmt: skip
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> list[int]:
        """Delete the cluster with kwokctl, then make sure every component process is gone.

        Returns the pids that survived even SIGKILL (empty when the shutdown was clean).
        """
        if not self.cluster_dir.exists():
            return []
        pids = list(self.pids().values())
        # If kwokctl fails, the pid sweep below still stops every component.
        with contextlib.suppress(UserError):
            self._kwokctl("delete", "cluster", "--kubeconfig", str(self.contexts_path), timeout=60)
        # kwokctl signals the components but does not wait for them; wait, and kill stragglers.
        left = terminate(pids, str(self.cluster_dir), timeout=timeout)
        if not left:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
        return left

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- readiness --------------------------------------------------------------------------
    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient for this cluster (imported here: the CLI stays light)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def is_serving(self) -> bool:
        """True when the API server answers /readyz through this cluster's kubeconfig."""
        if not self.kubeconfig.exists():
            return False
        try:
            from kubernetes import client

            with self.api_client() as api:
                client.VersionApi(api).get_code(_request_timeout=3)
                return True
        except Exception:
            return False

    def wait_ready(self) -> None:
        """Add the fake nodes and the CRDs; return once nodes are Ready, CRDs served, pods admissible."""
        from kubernetes import client

        deadline = time.monotonic() + self.ready_timeout
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            extensions = client.ApiextensionsV1Api(api)
            self._create_nodes(core)
            manifests = sorted(self.crds.glob("*.yaml"))
            files = [f"--filename={manifest}" for manifest in manifests]
            self._kubectl("apply", "--server-side", "--force-conflicts", *files)
            while True:
                missing = self._not_ready(core, extensions)
                if not missing:
                    return
                if time.monotonic() > deadline:
                    raise UserError(
                        f"region {self.name}: not ready after {self.ready_timeout:g}s: {missing}"
                        f" (logs: {self.cluster_dir / 'logs'})"
                    )
                time.sleep(0.5)

    def node_names(self) -> list[str]:
        return [f"kwok-{self.name}-{index}" for index in range(self.nodes)]

    def _create_nodes(self, core: Any) -> None:
        from kubernetes import client

        zones = "abc"
        for index, node_name in enumerate(self.node_names()):
            capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
            node = client.V1Node(
                metadata=client.V1ObjectMeta(
                    name=node_name,
                    # kwok-controller acts as the kubelet of nodes carrying this annotation.
                    annotations={KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    labels={
                        "type": "kwok",
                        "kubernetes.io/hostname": node_name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/role": "agent",
                        "topology.kubernetes.io/region": self.name,
                        "topology.kubernetes.io/zone": f"{self.name}{zones[index % len(zones)]}",
                    },
                ),
                status=client.V1NodeStatus(capacity=capacity, allocatable=capacity),
            )
            try:
                core.create_node(node)
            except client.ApiException as err:
                if err.status != 409:  # already there: `up` twice is fine
                    raise

    def _not_ready(self, core: Any, extensions: Any) -> str:
        """What is still missing, in words ('' when the cluster is ready)."""
        from kubernetes import client

        ready = {
            node.metadata.name
            for node in core.list_node().items
            if any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
        }
        waiting = [name for name in self.node_names() if name not in ready]
        if waiting:
            return f"nodes not Ready: {', '.join(waiting)}"
        established = {
            crd.metadata.name
            for crd in extensions.list_custom_resource_definition().items
            if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))
        }
        pending = [name for name in REQUIRED_CRDS if name not in established]
        if pending:
            return f"CRDs not established: {', '.join(pending)}"
        try:
            # The controller-manager creates each namespace's default ServiceAccount; until then the
            # API server refuses pods, so a Deployment applied too early would stall.
            core.read_namespaced_service_account("default", "default")
        except client.ApiException:
            return "the default ServiceAccount does not exist yet"
        return ""

    # -- kwokctl and kubectl ----------------------------------------------------------------
    def _kwokctl_config(self, binaries: dict[str, Path]) -> str:
        assert self.ports is not None
        options = {
            "runtime": "binary",
            "kubeVersion": KUBE_VERSION,
            "bindAddress": HOST,
            "kubeApiserverPort": self.ports.kube_apiserver,
            "etcdPort": self.ports.etcd,
            "etcdPeerPort": self.ports.etcd_peer,
            "kubeControllerManagerPort": self.ports.kube_controller_manager,
            "kubeSchedulerPort": self.ports.kube_scheduler,
            "kwokControllerPort": self.ports.kwok_controller,
            "cacheDir": str(self.kwok_workdir / "cache"),
            **{key: str(path) for key, path in binaries.items()},
        }
        lines = ["apiVersion: config.kwok.x-k8s.io/v1alpha1", "kind: KwokctlConfiguration", "options:"]
        lines += [f"  {key}: {_yaml_scalar(value)}" for key, value in options.items()]
        return "\n".join(lines) + "\n"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "KWOK_WORKDIR": str(self.kwok_workdir), "PATH": path_with_tools()}

    def _kwokctl(self, *args: str, timeout: float) -> None:
        command = [str(tool("kwokctl")), "--name", self.name, "--config", str(self.config_path), *args]
        log_path = self.kwok_workdir / f"{self.name}.kwokctl.log"
        with open(log_path, "ab") as log:
            try:
                result = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=self._env(), timeout=timeout, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired as err:
                raise UserError(f"region {self.name}: kwokctl {args[0]} timed out (log: {log_path})") from err
        if result.returncode != 0:
            raise UserError(self._failure(f"kwokctl {' '.join(args[:2])}", log_path))

    def _failure(self, what: str, log_path: Path) -> str:
        logs = [log_path, *sorted((self.cluster_dir / "logs").glob("*.log"))]
        for path in logs:
            text = path.read_text(errors="replace") if path.exists() else ""
            if "address already in use" in text:
                return f"region {self.name}: {what} failed: a port is already taken (log: {path})"
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
        last = tail[0][:300] if tail else "no output"
        return f"region {self.name}: {what} failed: {last} (log: {log_path})"

    def _kubectl(self, *args: str) -> str:
        command = [str(tool("kubectl")), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            command, capture_output=True, text=True, env=self._env(), timeout=self.ready_timeout + 30,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"region {self.name}: kubectl {args[0]} failed: {last[0][:300]}")
        return result.stdout


def _yaml_scalar(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
