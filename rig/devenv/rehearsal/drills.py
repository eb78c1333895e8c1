"""The drills as their CronJobs declare them: read from the primary region's API server, run locally.

A container cannot start on kwok nodes, so each CronJob's container runs here as a process with
exactly its command, arguments and environment (``value`` entries as written; ``secretKeyRef`` and
``configMapKeyRef`` entries from the rehearsal's secrets by key), in a fresh clone of the repository.
The drill's last output line and its report's RTO and RPO go into the rehearsal report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DRILL_LABEL = "rollout.markethub.io/drill"


def drill_jobs(kubeconfig: Path, namespace: str) -> list[dict[str, Any]]:
    """The drill CronJobs in the namespace, as the API server holds them."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(kubeconfig))
    try:
        listed = client.BatchV1Api(api_client).list_namespaced_cron_job(namespace, label_selector=DRILL_LABEL)
        return [api_client.sanitize_for_serialization(item) for item in listed.items]
    finally:
        api_client.close()


def container_command(
    cronjob: Mapping[str, Any], secrets: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The first container's command + args and its environment, with references resolved by key."""
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    argv = [*container.get("command", []), *container.get("args", [])]
    env: dict[str, str] = {}
    for entry in container.get("env", []) or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry.get("valueFrom", {})
        ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
        key = ref.get("key", entry["name"])
        if key in secrets:
            env[entry["name"]] = secrets[key]
        elif entry["name"] in secrets:
            env[entry["name"]] = secrets[entry["name"]]
    return argv, env


def run_drill(
    cronjob: Mapping[str, Any],
    secrets: Mapping[str, str],
    cwd: Path,
    base_env: Mapping[str, str],
    timeout: float = 240,
) -> dict[str, Any]:
    argv, env = container_command(cronjob, secrets)
    name = cronjob["metadata"]["labels"].get(DRILL_LABEL, cronjob["metadata"]["name"])
    if argv and argv[0] == "rollout":  # the image's entry point: the package's command
        argv = [sys.executable, "-m", "rollout_policies.cli.main", *argv[1:]]
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env={**base_env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        code, output = done.returncode, (done.stdout + done.stderr).strip()
    except subprocess.TimeoutExpired:
        code, output = -1, f"timed out after {timeout:.0f}s"
    report = _latest_report(cwd)
    last = output.splitlines()[-1][:300] if output else ""
    return {
        "name": name,
        "command": " ".join(
            cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
        ),
        "exit": code,
        "outcome": {0: "passed", 1: "failed", 3: "inconclusive"}.get(code, f"exit {code}"),
        "seconds": round(time.monotonic() - started, 1),
        "rto": report.get("rto", "-"),
        "rpo": report.get("rpo", "-"),
        "detail": last,
    }


def _latest_report(cwd: Path) -> dict[str, Any]:
    """RTO and RPO from the newest drill report JSON the drill wrote under its working folder."""
    reports = sorted(cwd.rglob("*.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(reports):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        found = {}
        for key in ("rto", "rpo"):
            for name, value in _walk(data):
                if name.lower().startswith(key):
                    found[key] = value
                    break
        if found:
            return found
    return {}


def _walk(data: Any, depth: int = 0) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    if isinstance(data, dict) and depth < 4:
        for key, value in data.items():
            if isinstance(value, (int, float, str)):
                pairs.append((str(key), value))
            else:
                pairs += _walk(value, depth + 1)
    return pairs
