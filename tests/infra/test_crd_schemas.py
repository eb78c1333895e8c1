"""The custom resources the program declares validate against the CRDs the local clusters install.

The CRDs (Gateway API, Velero, prometheus-operator) are the files `make tools` copies from the
projects' Go modules into the tools cache; their openAPIV3Schema is what the API server enforces.
"""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import pytest
from infra_helpers import rollout, settings
from pulumi_render import deploy
from ruamel.yaml import YAML

CACHE = Path(
    os.environ.get("MARKETHUB_TOOLS_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "markethub-rollout" / "tools"
)
CRDS = CACHE / "crds"

pytestmark = pytest.mark.skipif(
    not (CRDS / ".complete").exists(), reason=f"CRDs not installed in {CRDS} (run `make tools`)"
)


# The CRD files of the kinds the program declares (the others are large and not needed here).
FILES = (
    "gateway.networking.k8s.io_httproutes.yaml",
    "velero.io_schedules.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
    "monitoring.coreos.com_alertmanagerconfigs.yaml",
    "monitoring.coreos.com_servicemonitors.yaml",
)


def _schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the openAPIV3Schema the API server validates that kind with."""
    yaml = YAML(typ="safe")
    # YAML 1.1 tags a bare "=" (an enum value in AlertmanagerConfig) as !!value: it is a string.
    yaml.constructor.add_constructor(
        "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
    )
    schemas = {}
    for name in FILES:
        for crd in yaml.load_all((CRDS / name).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = version["schema"][
                    "openAPIV3Schema"
                ]
    return schemas


def _closed(schema):
    """The schema with unknown fields refused, as kubectl's validation and the API server's pruning
    treat them: an object schema listing ``properties`` admits no others unless it says so."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


def _validate(manifest: dict, schema: dict) -> None:
    # The schema itself is not checked: some CRD patterns are Go regular expressions (``^(?i)...``)
    # that Python's re rejects; they guard fields the program does not set.
    jsonschema.Draft7Validator(_closed(schema)).validate(manifest)


@pytest.fixture(scope="module")
def schemas():
    return _schemas()


# Kubernetes' own API groups that have a dot in their name: no CRD, the API server knows them.
BUILT_IN_GROUPS = {"rbac.authorization.k8s.io"}


def _custom_resources(deployed):
    for resource in deployed.resources:
        inputs = resource.inputs
        group = inputs.get("apiVersion", "").split("/")[0]
        if resource.type.startswith("kubernetes:") and "." in group and group not in BUILT_IN_GROUPS:
            yield inputs


@pytest.mark.parametrize("state", [rollout("beta", 0, 0), rollout("limited", 2, 10), rollout("full", 0, 100)])
def test_every_custom_resource_validates_against_its_crd(plan, schemas, state):
    deployed = deploy(settings(state=state, hostnames=["api.markethub.example"]), plan)
    kinds = set()
    for manifest in _custom_resources(deployed):
        key = (manifest["apiVersion"], manifest["kind"])
        assert key in schemas, f"no CRD for {key}"
        _validate(manifest, schemas[key])
        kinds.add(manifest["kind"])
    assert kinds == {"HTTPRoute", "Schedule", "PrometheusRule", "AlertmanagerConfig", "ServiceMonitor"}


def test_the_schema_check_catches_an_unknown_field(plan, schemas):
    schedule = next(m for m in _custom_resources(deploy(settings(), plan)) if m["kind"] == "Schedule")
    schedule["spec"]["template"]["labels"] = {"a": "b"}
    with pytest.raises(jsonschema.ValidationError, match="'labels' was unexpected"):
        _validate(schedule, schemas[("velero.io/v1", "Schedule")])


def test_the_schema_check_catches_a_bad_route(plan, schemas):
    route = next(m for m in _custom_resources(deploy(settings(), plan)) if m["kind"] == "HTTPRoute")
    route["spec"]["rules"][1]["backendRefs"][0]["weight"] = -1
    with pytest.raises(jsonschema.ValidationError):
        _validate(route, schemas[("gateway.networking.k8s.io/v1", "HTTPRoute")])
