"""What a region's API server says is live: the HTTPRoute's weights and cohort rule, the flags ConfigMap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.flags import FLAGS_FILE, config_map_name
from rollout_policies.gitops.kube_live import route_weights


def live_view(kubeconfig: Path | str, namespace: str, service: str) -> dict[str, Any]:
    """``{"weights": {"blue": .., "green": ..} | None, "cohort_rule": bool, "flags": dict | None}``."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(kubeconfig))
    try:
        try:
            route = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", namespace, "httproutes", service, _request_timeout=5
            )
        except client.ApiException:
            route = None
        try:
            config_map = client.CoreV1Api(api_client).read_namespaced_config_map(
                config_map_name(service), namespace, _request_timeout=5
            )
            flags = json.loads((config_map.data or {}).get(FLAGS_FILE, "null"))
        except client.ApiException:
            flags = None
    finally:
        api_client.close()
    weights = route_weights(route, service) if route else None
    rules = (route or {}).get("spec", {}).get("rules", []) or []
    cohort = any(any(m.get("headers") for m in rule.get("matches", []) or []) for rule in rules)
    return {
        "weights": {colour.value: weight for colour, weight in weights.items()} if weights else None,
        "cohort_rule": cohort,
        "flags": flags,
    }
