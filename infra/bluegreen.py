"""BlueGreenService: a Deployment, Service and PodDisruptionBudget per colour, plus the stable Service.

Nothing here depends on the traffic weights, the stage or the step, so a promotion never touches a
Deployment: its pods are not restarted. Replicas are left to the HPA (``spec.replicas`` is not set,
so Pulumi never fights the autoscaler). A Deployment's pod template changes only when its colour's
version or image changes, which is a new release, not a promotion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra import kube, naming
from infra.kube import Manifest
from infra.settings import Probes, Resources
from rollout_policies.state import Colour, Release

COMPONENT = "bluegreen"
FLAGS_MOUNT = "/etc/flagd"
FLAGS_FILE = "flags.json"


@dataclass(frozen=True)
class BlueGreenArgs:
    """What the blue-green pair needs: the two releases (from the rollout state) and the pod shape."""

    service: str
    namespace: str
    image: str
    stable: Release
    candidate: Release
    port: int = 8080
    probes: Probes = field(default_factory=Probes)
    resources: Resources = field(default_factory=Resources)
    disruption_max_unavailable: int = 1
    flags_config_map: str | None = None  # mounted for the OpenFeature flagd file provider
    extra_labels: dict[str, str] = field(default_factory=dict)

    def release(self, colour: Colour) -> Release:
        return self.stable if self.stable.colour is colour else self.candidate


def deployment_manifest(args: BlueGreenArgs, colour: Colour) -> Manifest:
    release = args.release(colour)
    name = naming.colour_name(args.service, colour)
    labels = {
        **naming.base_labels(args.service, COMPONENT),
        **args.extra_labels,
        **naming.selector(args.service, colour),
    }
    pod_labels = {**labels, naming.VERSION: release.version}
    env = [
        {"name": "MARKETHUB_COLOUR", "value": colour.value},
        {"name": "MARKETHUB_VERSION", "value": release.version},
    ]
    volumes: list[Manifest] = []
    mounts: list[Manifest] = []
    if args.flags_config_map:
        # flagd's in-process provider reads this file and watches it: a new stage's flags reach
        # running pods without a restart (the kubelet refreshes ConfigMap volumes in place).
        env.append({"name": "FLAGD_OFFLINE_FLAG_SOURCE_PATH", "value": f"{FLAGS_MOUNT}/{FLAGS_FILE}"})
        volumes.append({"name": "flags", "configMap": {"name": args.flags_config_map}})
        mounts.append({"name": "flags", "mountPath": FLAGS_MOUNT, "readOnly": True})
    probe_common = {
        "initialDelaySeconds": args.probes.initial_delay_seconds,
        "periodSeconds": args.probes.period_seconds,
    }
    container: Manifest = {
        "name": args.service,
        "image": f"{args.image}:{release.version}",
        "ports": [{"name": "http", "containerPort": args.port, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": {"httpGet": {"path": args.probes.readiness_path, "port": "http"}, **probe_common},
        "livenessProbe": {
            "httpGet": {"path": args.probes.liveness_path, "port": "http"},
            **probe_common,
            "failureThreshold": 3,
        },
        "resources": {"requests": dict(args.resources.requests), "limits": dict(args.resources.limits)},
    }
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: Manifest = {"containers": [container], "terminationGracePeriodSeconds": 30}
    if volumes:
        pod_spec["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": args.namespace,
            "labels": {**labels, naming.VERSION: release.version},
        },
        "spec": {
            "selector": {"matchLabels": naming.selector(args.service, colour)},
            "revisionHistoryLimit": 5,
            # Never below the current capacity while a new version rolls in.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def service_manifest(args: BlueGreenArgs, colour: Colour | None) -> Manifest:
    """A colour's Service (``colour`` given), or the stable Service selecting the stable colour."""
    target = colour if colour is not None else args.stable.colour
    name = naming.colour_name(args.service, colour) if colour is not None else args.service
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": args.namespace,
            "labels": {**naming.base_labels(args.service, COMPONENT), **args.extra_labels},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": naming.selector(args.service, target),
            "ports": [{"name": "http", "port": args.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pdb_manifest(args: BlueGreenArgs, colour: Colour) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": naming.colour_name(args.service, colour),
            "namespace": args.namespace,
            "labels": {
                **naming.base_labels(args.service, COMPONENT),
                **naming.selector(args.service, colour),
            },
        },
        "spec": {
            "maxUnavailable": args.disruption_max_unavailable,
            "selector": {"matchLabels": naming.selector(args.service, colour)},
        },
    }


class BlueGreenService(pulumi.ComponentResource):
    """Blue and green Deployments with a Service and a PodDisruptionBudget each, and the stable Service."""

    deployments: dict[Colour, pulumi.CustomResource]
    services: dict[Colour, pulumi.CustomResource]

    def __init__(self, name: str, args: BlueGreenArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:BlueGreenService", name, None, opts)
        child = kube.child_options(self, opts)
        self.deployments = {}
        self.services = {}
        for colour in (Colour.BLUE, Colour.GREEN):
            suffix = colour.value
            self.deployments[colour] = kube.apply(
                f"{name}-{suffix}", deployment_manifest(args, colour), child
            )
            self.services[colour] = kube.apply(f"{name}-{suffix}-svc", service_manifest(args, colour), child)
            kube.apply(f"{name}-{suffix}-pdb", pdb_manifest(args, colour), child)
        self.stable_service = kube.apply(f"{name}-stable-svc", service_manifest(args, None), child)
        self.service_names = {colour: naming.colour_name(args.service, colour) for colour in Colour}
        self.register_outputs(
            {
                "deployments": {c.value: naming.colour_name(args.service, c) for c in Colour},
                "stableService": args.service,
                "versions": {c.value: args.release(c).version for c in Colour},
            }
        )
