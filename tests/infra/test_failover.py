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


CHECKS = {"us-east-1": "hc-east", "us-west-2": "hc-west"}


def test_the_record_is_identified_by_region_and_carries_its_regions_health_check(plan):
    custom = settings(
        failover={"hostname": "api.markethub.example", "healthChecks": CHECKS, "target": "gw.elb"}
    )
    annotations = _annotations(deploy(custom, plan))
    assert annotations[ANN_SET_IDENTIFIER] == "us-east-1"
    assert annotations[ANN_HOSTNAME] == "api.markethub.example"
    assert annotations[ANN_HEALTH_CHECK] == "hc-east"
    assert annotations[ANN_TARGET] == "gw.elb"


def test_the_secondary_record_carries_the_secondarys_health_check(plan):
    west = settings(
        "prod-us-west-2", region="us-west-2", regionRole="secondary", failover={"healthChecks": CHECKS}
    )
    assert _annotations(deploy(west, plan))[ANN_HEALTH_CHECK] == "hc-west"


def test_a_region_without_a_health_check_gets_no_health_check_annotation(plan):
    annotations = _annotations(deploy(settings(failover={"healthChecks": {"us-west-2": "hc-west"}}), plan))
    assert ANN_HEALTH_CHECK not in annotations


def test_the_shipped_prod_stacks_hold_no_placeholder_health_check(plan):
    from pathlib import Path

    for path in sorted(Path(__file__).parents[2].glob("Pulumi.prod-*.yaml")):
        text = path.read_text()
        assert "11111111-" not in text and "healthCheckId" not in text, path.name


def test_public_service_is_cluster_ip_by_default(plan):
    assert deploy(settings(), plan).one("Service", PUBLIC)["spec"]["type"] == "ClusterIP"


def test_an_unknown_region_role_is_refused():
    with pytest.raises(UserError, match="regionRole"):
        settings(regionRole="tertiary")
