"""End to end on the local environment: the real API server accepts every object the program declares.

The objects are the program's own (recorded through the Pulumi mocks) applied with `kubectl apply
--server-side`, in a namespace of this test's own so the Pulumi end-to-end tests sharing the
environment never meet them. The API server validates them against the installed CRDs; kwok makes
the Deployments Available. `pulumi up` itself is covered by the lead's end-to-end.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest
from infra_helpers import REPOSITORY, rollout, settings
from pulumi_render import deploy

from devenv.pytest_fixtures import local_env, local_env_info
from devenv.tools import path_with_tools
from rollout_policies.plan.loader import load_plan

__all__ = ["local_env", "local_env_info"]

pytestmark = pytest.mark.e2e
PLAN = "rollout_policies/plans/markethub-mobile.yaml"


def _kubectl(kubeconfig, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "PATH": path_with_tools(os.environ.get("PATH", "")), "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run(
        ["kubectl", *args], input=stdin, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(("region", "role"), [("us-east-1", "primary"), ("us-west-2", "secondary")])
def test_the_api_server_accepts_every_object_and_green_becomes_available(local_env_info, region, role):
    namespace = f"infra-e2e-{secrets.token_hex(3)}"
    stack = settings(
        f"prod-{region}",
        state=rollout("limited", 1, 5),
        region=region,
        regionRole=role,
        namespace=namespace,
        backup={"veleroNamespace": namespace},
        alerts={"dashboardNamespace": namespace},
        # The shipped plan's crash rate comes from a JSON API: the controller needs its base URL.
        controller={
            "repository": REPOSITORY,
            "providers": {"jsonBaseUrls": {"crash_reporter": "https://crashes.markethub.example"}},
        },
    )
    objects = [r.inputs for r in deploy(stack, load_plan(PLAN)).resources if r.type.startswith("kubernetes:")]
    kubeconfig = local_env_info.kubeconfig(region)
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    rest = [o for o in objects if o["kind"] != "Namespace"]
    try:
        for batch in (namespaces, rest):
            document = json.dumps({"apiVersion": "v1", "kind": "List", "items": batch})
            _kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=document)
        _kubectl(
            kubeconfig,
            "-n",
            namespace,
            "wait",
            "--for=condition=Available",
            "deployment",
            "--all",
            "--timeout=120s",
        )
        weights = _kubectl(
            kubeconfig,
            "-n",
            namespace,
            "get",
            "httproute",
            "markethub-mobile",
            "-o",
            "jsonpath={.spec.rules[1].backendRefs[*].weight}",
        )
        assert weights.split() == ["95", "5"]
        failover = _kubectl(
            kubeconfig,
            "-n",
            namespace,
            "get",
            "service",
            "markethub-mobile-public",
            "-o",
            "jsonpath={.metadata.annotations}",
        )
        assert json.loads(failover)["external-dns.alpha.kubernetes.io/aws-failover"] == role.upper()
    finally:
        _kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false")
