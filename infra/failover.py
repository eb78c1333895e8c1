"""RegionalFailover: the region's public Service, annotated for Route 53 failover routing by external-dns.

One stack per region. external-dns turns the annotations into a failover record set: the
set-identifier names the region, ``aws-failover`` is PRIMARY or SECONDARY from the stack's
``regionRole``, and the record carries the Route 53 health check that decides when the secondary
takes over. The role is config, so a drill or a real failover is a config change (a commit).

The Service is ClusterIP by default: a LoadBalancer never gets an address on the local clusters
(``pulumi up`` would wait for one forever). In production the record points at the Gateway's load
balancer through the ``target`` annotation (``failover.target``); ``failover.serviceType:
LoadBalancer`` is there for clusters that expose the service directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra import kube, naming
from infra.kube import Manifest
from infra.settings import Failover, RegionRole

COMPONENT = "failover"
EXTERNAL_DNS = "external-dns.alpha.kubernetes.io"
ANN_HOSTNAME = f"{EXTERNAL_DNS}/hostname"
ANN_SET_IDENTIFIER = f"{EXTERNAL_DNS}/set-identifier"
ANN_FAILOVER = f"{EXTERNAL_DNS}/aws-failover"
ANN_HEALTH_CHECK = f"{EXTERNAL_DNS}/aws-health-check-id"
ANN_TARGET = f"{EXTERNAL_DNS}/target"
ANN_TTL = f"{EXTERNAL_DNS}/ttl"


@dataclass(frozen=True)
class FailoverArgs:
    service: str
    namespace: str
    region: str
    role: RegionRole
    port: int = 8080
    failover: Failover = field(default_factory=Failover)


def public_service_name(service: str) -> str:
    return f"{service}-public"


def failover_annotations(args: FailoverArgs) -> dict[str, str]:
    hostname = args.failover.hostname or f"{args.service}.example.com"
    annotations = {
        ANN_HOSTNAME: hostname,
        ANN_SET_IDENTIFIER: args.region,
        ANN_FAILOVER: args.role.failover,
        ANN_TTL: str(args.failover.ttl),
    }
    health_check = args.failover.health_checks.get(args.region)
    if health_check:
        annotations[ANN_HEALTH_CHECK] = health_check
    if args.failover.target:
        annotations[ANN_TARGET] = args.failover.target
    return annotations


def public_service_manifest(args: FailoverArgs) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": public_service_name(args.service),
            "namespace": args.namespace,
            "labels": {**naming.base_labels(args.service, COMPONENT), naming.REGION: args.region},
            "annotations": failover_annotations(args),
        },
        "spec": {
            "type": args.failover.service_type,
            # Every serving pod of either colour: the weighted split happens at the Gateway.
            "selector": naming.selector(args.service),
            "ports": [{"name": "http", "port": args.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


class RegionalFailover(pulumi.ComponentResource):
    """The public endpoint of one region, PRIMARY or SECONDARY in Route 53 failover routing."""

    def __init__(self, name: str, args: FailoverArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:RegionalFailover", name, None, opts)
        self.service = kube.apply(
            f"{name}-public", public_service_manifest(args), kube.child_options(self, opts)
        )
        self.register_outputs({"role": args.role.failover, "region": args.region})
