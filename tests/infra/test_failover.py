"""RegionalFailover: external-dns annotations for Route 53 failover routing on the public Service."""

from __future__ import annotations

import pytest
from infra_helpers import settings
from pulumi_render import deploy

from infra.failover import ANN_FAILOVER, ANN_HEALTH_CHECK, ANN_HOSTNAME, ANN_SET_IDENTIFIER, ANN_TARGET
from rollout_policies.errors import UserError

PUBLIC = "markethub-mobile-public"


def _annotations(deployed):
    return deployed.one("Service", PUBLIC)["metadata"]["annotations"]


def test_primary_region_is_the_primary_failover_record(plan):
    assert _annotations(deploy(settings(regionRole="primary"), plan))[ANN_FAILOVER] == "PRIMARY"


def test_secondary_region_is_the_secondary_failover_record(plan):
    west = settings("prod-us-west-2", region="us-west-2", regionRole="secondary")
    assert _annotations(deploy(west, plan))[ANN_FAILOVER] == "SECONDARY"


def test_the_record_is_identified_by_region_and_carries_the_health_check(plan):
    custom = settings(
        failover={"hostname": "api.markethub.example", "healthCheckId": "hc-123", "target": "gw.elb"}
    )
    annotations = _annotations(deploy(custom, plan))
    assert annotations[ANN_SET_IDENTIFIER] == "us-east-1"
    assert annotations[ANN_HOSTNAME] == "api.markethub.example"
    assert annotations[ANN_HEALTH_CHECK] == "hc-123"
    assert annotations[ANN_TARGET] == "gw.elb"


def test_public_service_is_cluster_ip_by_default(plan):
    assert deploy(settings(), plan).one("Service", PUBLIC)["spec"]["type"] == "ClusterIP"


def test_an_unknown_region_role_is_refused():
    with pytest.raises(UserError, match="regionRole"):
        settings(regionRole="tertiary")
