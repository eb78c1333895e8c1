"""Where the project's Go-built tools live (the cache tools/toolchain.sh fills), and checks they exist."""

from __future__ import annotations

import os
from pathlib import Path

from rollout_policies.errors import UserError


def tools_cache() -> Path:
    """The versioned tools cache, resolved exactly as tools/toolchain.sh resolves it."""
    explicit = os.environ.get("MARKETHUB_TOOLS_CACHE")
    if explicit:
        return Path(explicit)
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "markethub-rollout" / "tools"


def tools_bin() -> Path:
    """The folder holding every tool (kwokctl, etcd, kube-*, kubectl, pulumi, the provider)."""
    return tools_cache() / "bin"


def crds_dir() -> Path:
    """The Gateway API, Velero and prometheus-operator CRD manifests the toolchain downloaded."""
    return tools_cache() / "crds"


def tool(name: str) -> Path:
    """The path of one tool; a missing one is a one-line UserError that says how to get it."""
    path = tools_bin() / name
    if not (path.exists() and os.access(path, os.X_OK)):
        raise UserError(f"missing tool {name!r}: {path} not found or not executable (run `make tools`)")
    return path


def path_with_tools(base: str | None = None) -> str:
    """PATH with the tools folder first, so kwokctl and pulumi find the pinned binaries, not others."""
    rest = os.environ.get("PATH", "") if base is None else base
    return f"{tools_bin()}{os.pathsep}{rest}" if rest else str(tools_bin())
