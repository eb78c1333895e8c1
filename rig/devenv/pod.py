"""Runs a container of a declared pod as a local process: its command, arguments and environment exactly
as the kubelet would resolve them, for objects whose containers cannot start on kwok's fake nodes.

What the kubelet does and this does the same way:

- ``command`` + ``args`` (the container's own; an image ENTRYPOINT/CMD is not looked at: a container
  that sets ``command`` replaces it), with ``$(VAR)`` expanded from the container's environment as
  declared so far, ``$$`` an escaped ``$``, and an unknown ``$(VAR)`` left as it is;
- ``env`` in order: ``value``, ``valueFrom.secretKeyRef`` (from a Secret the caller reads, e.g. from
  the API server; a missing key fails unless ``optional``, and an optional missing one sets nothing),
  ``valueFrom.configMapKeyRef`` likewise, ``valueFrom.fieldRef`` for ``status.podIP``,
  ``metadata.name`` and ``metadata.namespace``;
- ``workingDir`` and every ``volumeMount``: each must be an ``emptyDir`` volume, which becomes an
  empty local folder; a path in the arguments under a mount point is mapped to that folder.

What the image gives (PATH, HOME) comes from ``base_env``: the caller says what the image's
``ENV`` would be on this machine. Nothing else is added.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SecretReader = Callable[[str, str], "str | None"]  # (secret or config map name, key) -> value or None

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class PodError(Exception):
    """The container cannot be run as declared (the kubelet would refuse it too)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(replace, text)


@dataclass
class LocalPod:
    """A pod's identity and where its volumes live on this machine."""

    name: str
    namespace: str
    pod_ip: str
    root: Path  # each emptyDir volume becomes root/<volume name>
    secrets: SecretReader
    config_maps: SecretReader = field(default=lambda name, key: None)

    def volume_dir(self, spec: Mapping[str, Any], volume: str) -> Path:
        declared = {v["name"]: v for v in spec.get("volumes", []) or []}
        if volume not in declared:
            raise PodError(f"volumeMount {volume}: no such volume in the pod")
        if "emptyDir" not in declared[volume]:
            raise PodError(f"volume {volume}: only emptyDir volumes can be made locally")
        path = self.root / volume
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _field(self, path: str) -> str:
        fields = {
            "status.podIP": self.pod_ip,
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
        }
        if path not in fields:
            raise PodError(f"fieldRef {path}: not supported here")
        return fields[path]

    def environment(self, container: Mapping[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env", []) or []:
            name = item["name"]
            if "value" in item:
                env[name] = expand(str(item["value"]), env)
                continue
            source = item.get("valueFrom") or {}
            if "fieldRef" in source:
                env[name] = self._field(source["fieldRef"]["fieldPath"])
                continue
            for kind, reader in (("secretKeyRef", self.secrets), ("configMapKeyRef", self.config_maps)):
                if kind in source:
                    ref = source[kind]
                    value = reader(ref["name"], ref["key"])
                    if value is None:
                        if not ref.get("optional"):
                            raise PodError(f"env {name}: {kind} {ref['name']}/{ref['key']} does not exist")
                    else:
                        env[name] = value
                    break
            else:
                if "valueFrom" in item:
                    raise PodError(f"env {name}: valueFrom {sorted(source)} not supported here")
                env[name] = ""
        return env

    def mounts(self, spec: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Path]:
        """Mount path in the container -> local folder."""
        return {
            mount["mountPath"]: self.volume_dir(spec, mount["name"])
            for mount in container.get("volumeMounts", []) or []
        }

    def local_path(self, path: str, mounts: Mapping[str, Path]) -> str:
        for mount_path in sorted(mounts, key=len, reverse=True):
            if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                return str(mounts[mount_path] / path[len(mount_path) :].lstrip("/"))
        return path

    def process(
        self, spec: Mapping[str, Any], container_name: str, base_env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str], Path]:
        """(argv, environment, working directory) of one container, as the kubelet would start it."""
        containers = {c["name"]: c for c in spec.get("containers", [])}
        if container_name not in containers:
            raise PodError(f"container {container_name}: not in the pod ({', '.join(containers)})")
        container = containers[container_name]
        if not container.get("command"):
            raise PodError(f"container {container_name}: no command (the image's ENTRYPOINT would run)")
        declared = self.environment(container)
        mounts = self.mounts(spec, container)
        argv = [
            self.local_path(expand(part, declared), mounts)
            for part in [*container["command"], *(container.get("args") or [])]
        ]
        working = container.get("workingDir")
        if not working:
            raise PodError(f"container {container_name}: no workingDir (the image's WORKDIR would be used)")
        workdir = Path(self.local_path(working, mounts))
        if not str(workdir).startswith(str(self.root)):
            raise PodError(f"workingDir {working}: not on a volume, so it cannot be made locally")
        workdir.mkdir(parents=True, exist_ok=True)
        return argv, {**base_env, **declared}, workdir


# -- a live Deployment's container, run here -------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def free_loopback_address(port: int) -> str:
    """A 127.x.y.z address (all of 127/8 is loopback on Linux) where ``port`` is free: the pod's own
    address, so a container's fixed port cannot collide with anything else on the machine."""
    import random
    import socket

    for _ in range(50):
        address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
        return address
    raise PodError(f"no loopback address with port {port} free")


def image_env(home: Path) -> dict[str, str]:
    """The Dockerfile's final ENV on this machine: its PATH entries mapped to where the same programs
    live here (the package's virtualenv for /opt/rollout/bin, the tool cache for /opt/pulumi)."""
    import sys

    from devenv.dockerfile import parse
    from devenv.tools import path_with_tools

    image = parse(ROOT / "Dockerfile").final.env()
    here = {"/opt/rollout/bin": str(Path(sys.executable).parent), "/opt/pulumi": path_with_tools("")}
    path = [here.get(entry, entry) for entry in image.pop("PATH").split(":")]
    return {**image, "PATH": ":".join(p for p in path if p), "HOME": str(home)}


def impersonating_kubeconfig(kubeconfig: Path, namespace: str, account: str, target: Path) -> Path:
    """In-cluster credentials stand-in: the admin kubeconfig impersonating the pod's ServiceAccount, so
    the process runs with the Role the program declares and nothing more."""
    import yaml

    config = yaml.safe_load(kubeconfig.read_text())
    for user in config["users"]:
        user["user"]["as"] = f"system:serviceaccount:{namespace}:{account}"
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o600)
    return target


def secret_reader(kubeconfig: Path, namespace: str) -> SecretReader:
    """Reads a Secret's key from the API server (None when the Secret or the key is missing)."""
    import base64

    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))

    def read(name: str, key: str) -> str | None:
        try:
            data = api.read_namespaced_secret(name, namespace).data or {}
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return base64.b64decode(data[key]).decode() if key in data else None

    return read


@dataclass
class RunningContainer:
    """One container of a live Deployment, running here as a process at the pod's own address."""

    process: Any
    pod_ip: str
    ports: Mapping[str, int]
    log: Path
    argv: list[str]

    def url(self, port: str = "http") -> str:
        return f"http://{self.pod_ip}:{self.ports[port]}"

    def stop(self, timeout: float = 20) -> None:
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_deployment(
    kubeconfig: Path, namespace: str, name: str, container: str, root: Path, ready_within: float = 180
) -> RunningContainer:
    """Read the Deployment back from the API server and start ``container`` as the kubelet would: its
    declared command line and environment (Secrets read from the cluster), the image's ENV, the pod's
    ServiceAccount's credentials; then wait for its readiness probe (a PodError when it never passes)."""
    import subprocess
    import time

    import httpx
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(kubeconfig))
    live = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    pod_spec = api_client.sanitize_for_serialization(live.spec.template.spec)
    declared = {c["name"]: c for c in pod_spec["containers"]}
    if container not in declared:
        raise PodError(f"deployment {namespace}/{name}: no container {container!r}")
    ports = {
        p.get("name") or str(p["containerPort"]): int(p["containerPort"])
        for p in declared[container].get("ports", [])
    }
    pod_ip = free_loopback_address(next(iter(ports.values()), 8080))
    root.mkdir(parents=True, exist_ok=True)
    pod = LocalPod(f"{name}-local", namespace, pod_ip, root / "volumes", secret_reader(kubeconfig, namespace))
    argv, env, workdir = pod.process(pod_spec, container, image_env(root))
    account = pod_spec.get("serviceAccountName") or "default"
    env["KUBECONFIG"] = str(
        impersonating_kubeconfig(kubeconfig, namespace, account, root / "in-cluster.kubeconfig")
    )
    log = root / f"{container}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    running = RunningContainer(process, pod_ip, ports, log, argv)
    probe = (declared[container].get("readinessProbe") or {}).get("httpGet")
    if probe is None:
        return running
    port = ports[probe["port"]] if isinstance(probe["port"], str) else int(probe["port"])
    deadline = time.monotonic() + ready_within
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise PodError(
                f"{namespace}/{name} {container}: exited {process.returncode}: {tail[0]} (log: {log})"
            )
        try:
            if httpx.get(f"http://{pod_ip}:{port}{probe['path']}", timeout=2).status_code == 200:
                return running
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            running.stop()
            raise PodError(f"{namespace}/{name} {container}: not ready in {ready_within:.0f}s (log: {log})")
        time.sleep(0.5)
