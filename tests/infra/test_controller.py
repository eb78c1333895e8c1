"""RolloutController: the controller's objects, and how the alert route reaches it (pure, under mocks)."""

from __future__ import annotations

import pytest
from infra_helpers import REPOSITORY, rollout, settings
from pulumi_render import deploy

from infra.alert_route import NOTIFY_RECEIVER, WEBHOOK_RECEIVER
from infra.controller import RULES, WORK_DIR
from rollout_policies import envvars
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Notifications

SERVICE = "markethub-mobile"
CONTROLLER = f"{SERVICE}-rollout"


def _pod(deployed) -> dict:
    return deployed.one("Deployment", CONTROLLER)["spec"]["template"]["spec"]


def _container(deployed, name: str = "serve") -> dict:
    return next(c for c in _pod(deployed)["containers"] if c["name"] == name)


def _env(container) -> dict[str, dict]:
    return {item["name"]: item for item in container["env"]}


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


SHIPPED_PLAN = "rollout_policies/plans/markethub-mobile.yaml"  # as the shipped stack configs name it


def test_the_deployment_runs_rollout_serve_for_this_stack_from_a_clone_of_the_repository(plan):
    serve = _container(deploy(settings(state=rollout("limited", 1, 5), plan=SHIPPED_PLAN), plan))
    assert serve["command"] == ["rollout"]
    args = serve["args"]
    assert args[0] == "serve"
    assert _flag(args, "--stack") == "prod-us-east-1"
    assert _flag(args, "--clone-from") == REPOSITORY
    assert _flag(args, "--repo") == "repo"
    assert serve["workingDir"] == WORK_DIR
    # The stack's plan path is relative to the project, which is the clone.
    assert _flag(args, "--plan") == "repo/rollout_policies/plans/markethub-mobile.yaml"
    assert "--apply" in args and _flag(args, "--applier") == "pulumi"


def test_the_plan_is_found_inside_the_config_dir_when_the_project_is_a_subfolder(plan):
    config_dir = {"repository": REPOSITORY, "configDir": "rollout"}
    serve = _container(deploy(settings(controller=config_dir, plan=SHIPPED_PLAN), plan))
    assert _flag(serve["args"], "--config-dir") == "rollout"
    assert _flag(serve["args"], "--plan") == "repo/rollout/rollout_policies/plans/markethub-mobile.yaml"


def test_an_absolute_plan_path_is_passed_as_it_is(plan):
    # The default plan is the installed package's own file: the image has it at the same path.
    serve = _container(deploy(settings(plan="/opt/plans/team.yaml"), plan))
    assert _flag(serve["args"], "--plan") == "/opt/plans/team.yaml"


def test_serve_listens_on_the_pods_own_address_which_kubernetes_fills_in(plan):
    serve = _container(deploy(settings(), plan))
    assert _flag(serve["args"], "--listen") == "$(POD_IP):8080"
    assert _env(serve)["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert serve["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_the_token_variable_serve_reads_comes_from_the_webhook_secret(plan):
    serve = _container(deploy(settings(), plan))
    assert _flag(serve["args"], "--token-env") == envvars.WEBHOOK_TOKEN
    assert _env(serve)[envvars.WEBHOOK_TOKEN]["valueFrom"] == {
        "secretKeyRef": {"name": "rollout-webhook", "key": "token"}
    }


def test_an_https_repository_gets_the_git_token_and_a_local_one_does_not(plan):
    https = _env(_container(deploy(settings(), plan)))
    assert https[envvars.GIT_TOKEN]["valueFrom"]["secretKeyRef"] == {"name": "rollout-git", "key": "token"}
    local = _env(_container(deploy(settings(controller={"repository": "file:///srv/rollout.git"}), plan)))
    assert envvars.GIT_TOKEN not in local and envvars.GIT_USERNAME not in local


def test_a_github_repository_gives_the_forge_to_mark_stale_promotions(plan):
    serve = _container(deploy(settings(), plan))
    assert _flag(serve["args"], "--forge-repo") == "markethub/markethub-rollout"
    assert _env(serve)[envvars.FORGE_TOKEN]["valueFrom"]["secretKeyRef"] == {
        "name": "rollout-forge",
        "key": "token",
    }
    other = _container(deploy(settings(controller={"repository": "https://git.example/r.git"}), plan))
    assert "--forge-repo" not in other["args"] and envvars.FORGE_TOKEN not in _env(other)
    named = {"repository": "https://git.example/r.git", "forgeRepository": "org/rollout"}
    assert (
        _flag(_container(deploy(settings(controller=named), plan))["args"], "--forge-repo") == "org/rollout"
    )


def test_the_apply_gets_the_pulumi_backend_from_its_secret(plan):
    env = _env(_container(deploy(settings(), plan)))
    assert env[envvars.PULUMI_BACKEND_URL]["valueFrom"]["secretKeyRef"] == {
        "name": "rollout-pulumi",
        "key": "backend-url",
    }
    assert env[envvars.PULUMI_CONFIG_PASSPHRASE]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_notification_variables_are_the_ones_the_plan_names(plan):
    named = plan.model_copy(
        update={
            "notifications": Notifications(slack_webhook_env="TEAM_SLACK", pagerduty_routing_key_env="PD")
        }
    )
    env = _env(_container(deploy(settings(), named)))
    assert env["TEAM_SLACK"]["valueFrom"]["secretKeyRef"] == {
        "name": "rollout-notify",
        "key": "slack-webhook-url",
        "optional": True,
    }
    assert env["PD"]["valueFrom"]["secretKeyRef"]["key"] == "pagerduty-routing-key"
    assert "TEAM_SLACK" not in _env(_container(deploy(settings(), plan)))


def test_secrets_are_referenced_never_created(plan):
    deployed = deploy(settings(), plan)
    assert deployed.of_kind("Secret") == []
    referenced = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for container in _pod(deployed)["containers"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert referenced == {"rollout-webhook", "rollout-git", "rollout-forge", "rollout-pulumi"}


def test_the_pod_runs_as_a_non_root_user_without_privilege_escalation(plan):
    pod = _pod(deploy(settings(), plan))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # Only empty volumes: a pod restart clones again; nothing of the cluster's is mounted.
    assert all(set(volume) == {"name", "emptyDir"} for volume in pod["volumes"])


def test_the_role_allows_the_route_the_flags_config_map_and_reading_deployments(plan):
    deployed = deploy(settings(), plan)
    role = deployed.one("Role", CONTROLLER)
    assert role["rules"] == [
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "verbs": ["get", "list", "watch", "patch", "update"],
        },
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [f"{SERVICE}-flags"],
            "verbs": ["get", "patch", "update", "delete"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "watch"]},
    ]
    assert role["rules"][:2] == list(RULES)
    binding = deployed.one("RoleBinding", CONTROLLER)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER}
    account = deployed.one("ServiceAccount", CONTROLLER)["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "markethub"}]
    assert _pod(deployed)["serviceAccountName"] == account


def test_alertmanager_posts_to_the_controllers_service_with_the_token_serve_expects(plan):
    deployed = deploy(settings(), plan)
    config = deployed.one("AlertmanagerConfig", f"{SERVICE}-rollout")["spec"]
    (webhook,) = next(r for r in config["receivers"] if r["name"] == WEBHOOK_RECEIVER)["webhookConfigs"]
    service = deployed.one("Service", f"{SERVICE}-rollout-webhook")
    port = service["spec"]["ports"][0]
    assert webhook["url"] == f"http://{SERVICE}-rollout-webhook.markethub.svc:{port['port']}/alerts"
    serve = _container(deployed)
    assert port["targetPort"] == serve["ports"][0]["name"]
    assert service["spec"]["selector"].items() <= _pod_labels(deployed).items()
    token_ref = _env(serve)[_flag(serve["args"], "--token-env")]["valueFrom"]["secretKeyRef"]
    assert webhook["httpConfig"]["authorization"] == {"type": "Bearer", "credentials": token_ref}


def _pod_labels(deployed) -> dict[str, str]:
    return deployed.one("Deployment", CONTROLLER)["spec"]["template"]["metadata"]["labels"]


def test_the_services_own_services_never_select_the_controllers_pod(plan):
    deployed = deploy(settings(), plan)
    labels = _pod_labels(deployed)
    for service in deployed.of_kind("Service"):
        if service["metadata"]["name"] == f"{SERVICE}-rollout-webhook":
            continue
        assert not service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]


# -- where each alert goes ---------------------------------------------------------------------------


def _matches(matchers: list[dict], labels: dict[str, str]) -> bool:
    assert all(m["matchType"] == "=" for m in matchers)
    return all(labels.get(m["name"]) == m["value"] for m in matchers)


def receivers_for(config: dict, namespace: str, labels: dict[str, str]) -> list[str]:
    """Alertmanager's routing of one alert through the AlertmanagerConfig, with the operator's
    ``namespace`` matcher on the top route (its default OnNamespace strategy)."""
    top = config["route"]
    if labels.get("namespace") != namespace or not _matches(top.get("matchers", []), labels):
        return []
    reached = []
    for child in top.get("routes", []):
        if _matches(child.get("matchers", []), labels):
            reached.append(child["receiver"])
            if not child.get("continue"):
                return reached
    return reached or [top["receiver"]]


def _every_rule(deployed) -> list[dict]:
    return [
        rule
        for manifest in deployed.of_kind("PrometheusRule")
        for group in manifest["spec"]["groups"]
        for rule in group["rules"]
    ]


def test_every_rollback_trigger_reaches_the_controller_and_people(plan):
    deployed = deploy(settings(), plan)
    config = deployed.one("AlertmanagerConfig", f"{SERVICE}-rollout")["spec"]
    triggers = [r for r in _every_rule(deployed) if r["labels"]["rollout_action"] == "rollback"]
    assert len(triggers) == 4
    for rule in triggers:
        assert receivers_for(config, "markethub", rule["labels"]) == [WEBHOOK_RECEIVER, NOTIFY_RECEIVER]


def test_every_other_alert_reaches_the_notification_receiver_never_nothing(plan):
    deployed = deploy(settings(state=rollout("limited", 1, 5)), plan)
    config = deployed.one("AlertmanagerConfig", f"{SERVICE}-rollout")["spec"]
    others = [r for r in _every_rule(deployed) if r["labels"]["rollout_action"] != "rollback"]
    assert others, "the stage has gate alerts"
    for rule in others:
        assert receivers_for(config, "markethub", rule["labels"]) == [NOTIFY_RECEIVER], rule["alert"]
    (slack,) = next(r for r in config["receivers"] if r["name"] == NOTIFY_RECEIVER)["slackConfigs"]
    assert slack["apiURL"] == {"name": "rollout-notify", "key": "slack-webhook-url"}


def test_a_rule_without_the_namespace_label_would_reach_no_receiver(plan):
    deployed = deploy(settings(), plan)
    config = deployed.one("AlertmanagerConfig", f"{SERVICE}-rollout")["spec"]
    labels = dict(_every_rule(deployed)[0]["labels"])
    del labels["namespace"]
    assert receivers_for(config, "markethub", labels) == []


def test_a_webhook_url_in_the_stack_config_still_wins(plan):
    custom = settings(alerts={"webhookUrl": "http://127.0.0.1:9999/alerts"})
    config = deploy(custom, plan).one("AlertmanagerConfig", f"{SERVICE}-rollout")["spec"]
    (webhook,) = next(r for r in config["receivers"] if r["name"] == WEBHOOK_RECEIVER)["webhookConfigs"]
    assert webhook["url"] == "http://127.0.0.1:9999/alerts"


# -- settings ----------------------------------------------------------------------------------------


def test_a_disabled_controller_declares_nothing(plan):
    deployed = deploy(settings(controller={"enabled": False}), plan)
    assert [r for r in deployed.resources if r.type == "markethub:infra:RolloutController"] == []
    assert deployed.of_kind("Role") == []


def test_the_controller_needs_its_repository():
    with pytest.raises(
        UserError, match=r"Pulumi.prod-us-east-1.yaml: markethub-rollout:controller.repository"
    ):
        settings(controller={"image": "x"})


def test_watch_runs_beside_serve_and_needs_a_prometheus(plan):
    watching = {"repository": REPOSITORY, "watch": True, "prometheusUrl": "http://prometheus:9090"}
    watch = _container(deploy(settings(controller=watching), plan), "watch")
    assert watch["args"][:3] == ["watch", "--prometheus", "http://prometheus:9090"]
    assert _flag(watch["args"], "--repo") == "repo-watch"
    assert envvars.WEBHOOK_TOKEN not in _env(watch)
    with pytest.raises(UserError, match="controller: Value error, watch needs prometheusUrl"):
        settings(controller={"repository": REPOSITORY, "watch": True})
