"""docs/deploy.md names every secret and variable, and the code reads exactly those names.

The names the code reads come from its source (``tests/env_scan.py``, with ``ast``), the plan and the
Pulumi CLI's few variables; the names the controller gets come from the Deployment the program
renders for each production stack; the GitHub secrets from the workflows as written.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from env_scan import plan_named, read_in_source

from infra.alert_route import alertmanager_config_manifest
from infra.alerts import AlertsArgs, route_args
from infra.controller import deployment_manifest
from infra.program import controller_args, current_stage, load_plan_file, resolve_plan_path
from infra.settings import settings_from_stack_file
from rollout_policies import envvars

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()
STACKS = sorted(ROOT.glob("Pulumi.prod-*.yaml"))
SHIPPED_PLAN = load_plan_file(resolve_plan_path("rollout_policies/plans/markethub-mobile.yaml"))


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else len(DOC)]


def _first_column(section: str) -> list[str]:
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, re.M)


@functools.cache
def _read_by_the_product() -> frozenset[str]:
    tools = {*envvars.READ_BY_PULUMI, *envvars.READ_BY_AWS_SDK}
    return frozenset(read_in_source()) | plan_named(SHIPPED_PLAN) | tools


def _rendered(stack_file: Path) -> tuple[dict, dict]:
    settings = settings_from_stack_file(stack_file)
    plan = load_plan_file(resolve_plan_path(settings.plan))
    service = settings.service_name or plan.service
    deployment = deployment_manifest(controller_args(settings, plan, service))
    alerts = AlertsArgs(
        service=service,
        namespace=settings.namespace,
        plan=plan,
        stage=current_stage(settings, plan),
        stack=settings.stack,
        region=settings.region,
        alerts=settings.alerts,
        webhook_secret=settings.controller.webhook_secret,
        notify_secret=settings.controller.notify_secret,
    )
    return deployment, alertmanager_config_manifest(route_args(alerts))


def test_the_variables_table_is_exactly_what_the_code_reads():
    documented = _first_column(_section("Every environment variable the product reads"))
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    read = _read_by_the_product()
    assert set(documented) - read == set(), "documented but read by nothing"
    assert read - set(documented) == set(), "read by the code but not in docs/deploy.md"


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_every_variable_the_deployment_sets_is_read_and_documented(stack_file):
    deployment, _ = _rendered(stack_file)
    documented = set(_first_column(_section("Every environment variable the product reads")))
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for item in container["env"]:
            name = item["name"]
            if name == "POD_IP":  # read by Kubernetes: $(POD_IP) in the arguments
                assert any("$(POD_IP)" in arg for arg in container["args"])
                continue
            assert name in _read_by_the_product(), f"{name}: set on the controller, read by nothing"
            assert name in documented, name


def _documented_secret_keys() -> set[tuple[str, str]]:
    section = _section("3. Secrets in each cluster")
    return set(re.findall(r"^\| `([a-z-]+)` \| `([a-z-]+)` \|", section, re.M))


def _referenced(node: object) -> set[tuple[str, str]]:
    """Every (Secret, key) a manifest references: secretKeyRef, and the operator's SecretKeySelectors."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        if set(node) >= {"name", "key"} and set(node) <= {"name", "key", "optional"}:
            found.add((node["name"], node["key"]))
        for value in node.values():
            found |= _referenced(value)
    elif isinstance(node, list):
        for value in node:
            found |= _referenced(value)
    return found


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_the_secrets_table_is_every_secret_key_the_controller_and_the_route_reference(stack_file):
    deployment, route = _rendered(stack_file)
    referenced = _referenced(deployment) | _referenced(route)
    documented = _documented_secret_keys()
    # The git Secret is referenced for https repositories (the shipped stacks use https).
    assert referenced == documented


def _used_in_workflows(kind: str) -> set[str]:
    used: set[str] = set()
    for workflow in (ROOT / ".github" / "workflows").glob("*.y*ml"):
        used |= set(re.findall(rf"\b{kind}\.([A-Za-z_][A-Za-z0-9_]*)", workflow.read_text()))
    return used


def test_the_github_tables_are_every_secret_and_variable_the_workflows_use():
    github = _section("6. GitHub")
    secrets_table, _, variables_table = github.partition("and these repository variables:")
    assert set(_first_column(secrets_table)) == _used_in_workflows("secrets")
    assert set(_first_column(variables_table)) == _used_in_workflows("vars")


def test_the_doc_says_the_image_needs_the_pulumi_cli():
    image = _section("1. The image")
    assert "the Pulumi CLI with the Kubernetes\nprovider" in image
    assert "tools/versions.env" in image
