"""Turns a plain Kubernetes manifest (a dict built by a pure helper) into the Pulumi resource for it.

Components build manifests with pure functions, tested without Pulumi, then call ``apply`` here.
Core kinds get their typed pulumi-kubernetes class, so the provider's await logic applies (a
Deployment waits until Available); anything else becomes a ``CustomResource``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

Manifest = dict[str, Any]

_TYPED: dict[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("batch/v1", "CronJob"): k8s.batch.v1.CronJob,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
}
# Top-level fields each typed class takes besides apiVersion, kind and metadata.
_BODY_FIELDS = ("spec", "data", "rules", "role_ref", "subjects")


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def pulumi_type(manifest: Manifest) -> str:
    """The Pulumi type token a manifest becomes, e.g. ``kubernetes:apps/v1:Deployment``."""
    return f"kubernetes:{manifest['apiVersion']}:{manifest['kind']}"


def apply(name: str, manifest: Manifest, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Declare ``manifest`` as a Pulumi resource with logical name ``name``."""
    key = (manifest["apiVersion"], manifest["kind"])
    typed = _TYPED.get(key)
    body = {_snake(field): value for field, value in manifest.items() if _snake(field) in _BODY_FIELDS}
    if typed is not None:
        return typed(name, metadata=manifest["metadata"], opts=opts, **body)
    return k8s.apiextensions.CustomResource(
        name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        opts=opts,
        **body,
    )


def child_options(parent: pulumi.Resource, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """Options for a component's children: parented to it, and waiting for what the component waits for
    (Pulumi does not pass a component's ``depends_on`` down to its children by itself)."""
    return pulumi.ResourceOptions(parent=parent, depends_on=opts.depends_on if opts else None)
