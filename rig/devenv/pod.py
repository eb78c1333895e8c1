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
