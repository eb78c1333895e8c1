"""BlueGreenService: Deployments, Services and PodDisruptionBudgets per colour."""

from __future__ import annotations

from infra_helpers import rollout, settings
from pulumi_render import deploy

from infra import naming
from infra.bluegreen import BlueGreenArgs, deployment_manifest
from rollout_policies.state import Colour, Release

SERVICE = "markethub-mobile"


def test_each_deployment_is_labelled_with_its_colour_and_version(plan):
    deployed = deploy(settings(), plan)
    blue = deployed.one("Deployment", f"{SERVICE}-blue")
    green = deployed.one("Deployment", f"{SERVICE}-green")
    assert blue["spec"]["template"]["metadata"]["labels"][naming.COLOUR] == "blue"
    assert blue["spec"]["template"]["metadata"]["labels"][naming.VERSION] == "4.12.0"
    assert green["spec"]["template"]["metadata"]["labels"][naming.COLOUR] == "green"
    assert green["metadata"]["labels"][naming.VERSION] == "5.0.0"


def test_each_colour_runs_its_own_version_of_the_image(plan):
    deployed = deploy(settings(), plan)
    images = {
        colour: deployed.one("Deployment", f"{SERVICE}-{colour}")["spec"]["template"]["spec"]["containers"][
            0
        ]["image"]
        for colour in ("blue", "green")
    }
    assert images == {
        "blue": "ghcr.io/markethub/markethub-mobile:4.12.0",
        "green": "ghcr.io/markethub/markethub-mobile:5.0.0",
    }


def test_deployment_selector_leaves_out_the_version_because_selectors_are_immutable(plan):
    green = deploy(settings(), plan).one("Deployment", f"{SERVICE}-green")
    assert green["spec"]["selector"]["matchLabels"] == {naming.NAME: SERVICE, naming.COLOUR: "green"}


def test_deployment_leaves_replicas_to_the_autoscaler(plan):
    green = deploy(settings(), plan).one("Deployment", f"{SERVICE}-green")
    assert "replicas" not in green["spec"]


def test_containers_have_probes_and_resources(plan):
    container = deploy(settings(), plan).one("Deployment", f"{SERVICE}-green")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz/live", "port": "http"}
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


def test_probe_paths_and_resources_come_from_config(plan):
    custom = settings(
        probes={"readinessPath": "/ready", "livenessPath": "/alive"},
        resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    )
    container = deploy(custom, plan).one("Deployment", f"{SERVICE}-blue")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/alive"
    assert container["resources"]["limits"] == {"memory": "2Gi"}


def test_a_service_selects_each_colour(plan):
    deployed = deploy(settings(), plan)
    for colour in ("blue", "green"):
        service = deployed.one("Service", f"{SERVICE}-{colour}")
        assert service["spec"]["selector"] == {naming.NAME: SERVICE, naming.COLOUR: colour}


def test_the_stable_service_selects_the_stable_colour(plan):
    state = rollout("limited", 0, 2, candidate="blue")  # green is stable in this release
    stable = deploy(settings(state=state), plan).one("Service", SERVICE)
    assert stable["spec"]["selector"][naming.COLOUR] == "green"


def test_each_colour_has_a_disruption_budget(plan):
    deployed = deploy(settings(), plan)
    budgets = {pdb["metadata"]["name"]: pdb["spec"] for pdb in deployed.of_kind("PodDisruptionBudget")}
    assert budgets == {
        f"{SERVICE}-blue": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {naming.NAME: SERVICE, naming.COLOUR: "blue"}},
        },
        f"{SERVICE}-green": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {naming.NAME: SERVICE, naming.COLOUR: "green"}},
        },
    }


def test_pods_mount_the_flag_definitions_for_flagd():
    args = BlueGreenArgs(
        service=SERVICE,
        namespace="markethub",
        image="img",
        stable=Release(colour=Colour.BLUE, version="1"),
        candidate=Release(colour=Colour.GREEN, version="2"),
        flags_config_map=f"{SERVICE}-flags",
    )
    pod = deployment_manifest(args, Colour.GREEN)["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "flags", "configMap": {"name": f"{SERVICE}-flags"}}]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["FLAGD_OFFLINE_FLAG_SOURCE_PATH"] == "/etc/flagd/flags.json"
