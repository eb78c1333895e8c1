"""RolloutController: the controller's objects, and how the alert route reaches it (pure, under mocks)."""

from __future__ import annotations

import pytest
from infra_helpers import REPOSITORY, rollout, settings
from pulumi_render import deploy

from infra.alert_route import NOTIFY_RECEIVER, WEBHOOK_RECEIVER
from infra.controller import RULES, WORK_DIR
from rollout_policies import envvars
from rollout_policies.errors import UserError
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Notifications, Plan
from rollout_policies.providers.settings import ProviderSettings

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
    assert "--forge-url" not in _container(deploy(settings(controller=named), plan))["args"]


def test_a_github_enterprise_forge_gets_its_api_url(plan):
    enterprise = {
        "repository": "https://ghe.example/org/rollout.git",
        "forgeRepository": "org/rollout",
        "forgeUrl": "https://ghe.example/api/v3",
    }
    serve = _container(deploy(settings(controller=enterprise), plan))
    assert _flag(serve["args"], "--forge-url") == "https://ghe.example/api/v3"
    assert _flag(serve["args"], "--forge-repo") == "org/rollout"


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
    assert referenced == {
        "rollout-webhook",
        "rollout-git",
        "rollout-forge",
        "rollout-pulumi",
        "rollout-providers",
    }


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


# -- the collector's providers, and Prometheus scraping what it exports -------------------------------

CRASHES = "https://crashes.markethub.example"
WITH_PROVIDERS = {"repository": REPOSITORY, "providers": {"jsonBaseUrls": {"crash_reporter": CRASHES}}}


@pytest.fixture(scope="module")
def shipped_plan() -> Plan:
    return load_plan(DEFAULT_PLAN)


def _values(container) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def _refs(container) -> dict[str, dict]:
    return {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def test_serve_gets_every_provider_setting_the_shipped_plans_rules_need(shipped_plan):
    serve = _container(deploy(settings(controller=WITH_PROVIDERS), shipped_plan))
    values, refs = _values(serve), _refs(serve)
    # crash rate (json_http), load-balancer failures and health (cloudwatch), the gate metrics (sql)
    assert values[envvars.JSON_BASE_URLS] == f"crash_reporter={CRASHES}"
    assert values[envvars.CLOUDWATCH_REGION] == "us-east-1"  # the stack's region
    assert envvars.CLOUDWATCH_ENDPOINT_URL not in values  # AWS itself
    assert refs[envvars.SQL_DSN] == {"name": "rollout-providers", "key": "sql-dsn"}
    # Static keys are optional: without them the SDK uses the pod's web identity (IRSA).
    assert refs[envvars.AWS_ACCESS_KEY_ID] == {
        "name": "rollout-providers",
        "key": "aws-access-key-id",
        "optional": True,
    }
    assert refs[envvars.AWS_SECRET_ACCESS_KEY]["optional"] is True
    assert envvars.PROMETHEUS_URL not in values  # Prometheus reads its own series; nothing to collect


def test_the_settings_the_collector_reads_from_that_environment_are_the_stack_configs(shipped_plan):
    providers = {
        "jsonBaseUrls": {"crash_reporter": CRASHES, "surveys": "https://surveys.example/v2"},
        "cloudwatchRegion": "eu-west-1",
        "cloudwatchEndpointUrl": "http://127.0.0.1:5000",
        "timeout": 2.5,
        "attempts": 4,
    }
    serve = _container(
        deploy(settings(controller={"repository": REPOSITORY, "providers": providers}), shipped_plan)
    )
    secrets = {name: f"<{ref['key']}>" for name, ref in _refs(serve).items()}
    found = ProviderSettings.from_env({**_values(serve), **secrets})
    assert dict(found.json_base_urls) == providers["jsonBaseUrls"]
    assert found.for_provider("cloudwatch") == {
        "endpoint_url": "http://127.0.0.1:5000",
        "region": "eu-west-1",
        "timeout": 2.5,
        "attempts": 4,
    }
    assert found.sql_dsn == "<sql-dsn>"


def test_a_json_api_the_plan_names_without_a_url_fails_the_program_naming_the_key(shipped_plan):
    with pytest.raises(
        UserError,
        match=r"Pulumi.prod-us-east-1.yaml: markethub-rollout:controller.providers.jsonBaseUrls: "
        r"no URL for 'crash_reporter' \(the plan's metric crash_rate reads it\)",
    ):
        deploy(settings(), shipped_plan)


def test_only_the_providers_some_rule_reads_get_settings(plan):
    # The test plan's rules read json_http and cloudwatch metrics; its sql metric is read by no rule.
    serve = _container(deploy(settings(), plan))
    assert envvars.CLOUDWATCH_REGION in _values(serve)
    assert envvars.SQL_DSN not in _refs(serve)
    # Only Prometheus triggers, no gate alerts: the collector measures nothing, so no provider settings.
    prometheus_only = plan.model_copy(
        update={
            "triggers": tuple(t for t in plan.triggers if t.metric in ("api_error_rate", "db_connected")),
            "stages": tuple(s.model_copy(update={"gates": ()}) for s in plan.stages),
        }
    )
    serve = _container(deploy(settings(), prometheus_only))
    names = {item["name"] for item in serve["env"]}
    assert not names & {
        envvars.JSON_BASE_URLS,
        envvars.CLOUDWATCH_REGION,
        envvars.SQL_DSN,
        envvars.AWS_ACCESS_KEY_ID,
        envvars.AWS_SECRET_ACCESS_KEY,
    }


def test_a_plan_token_variable_comes_from_the_providers_secret(plan):
    metrics = tuple(
        m.model_copy(
            update={"source": m.source.model_copy(update={"options": {"token_env": "CRASH_API_TOKEN"}})}
        )
        if m.id == "crash_rate"
        else m
        for m in plan.metrics
    )
    serve = _container(deploy(settings(), plan.model_copy(update={"metrics": metrics})))
    assert _refs(serve)["CRASH_API_TOKEN"] == {"name": "rollout-providers", "key": "crash-api-token"}


def test_the_watch_container_gets_no_provider_credentials(plan):
    watching = {"repository": REPOSITORY, "watch": True, "prometheusUrl": "http://prometheus:9090"}
    watch = _container(deploy(settings(controller=watching), plan), "watch")
    assert not {item["name"] for item in watch["env"]} & {envvars.SQL_DSN, envvars.AWS_SECRET_ACCESS_KEY}


def test_an_aws_role_annotates_the_service_account_for_irsa(plan):
    plain = deploy(settings(), plan).one("ServiceAccount", CONTROLLER)
    assert "annotations" not in plain["metadata"]
    role = "arn:aws:iam::123456789012:role/rollout"
    account = deploy(settings(controller={"repository": REPOSITORY, "awsRoleArn": role}), plan).one(
        "ServiceAccount", CONTROLLER
    )
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}


def test_prometheus_scrapes_the_controllers_metrics_port_through_a_service_monitor(plan):
    deployed = deploy(settings(), plan)
    (monitor,) = deployed.of_kind("ServiceMonitor")
    service = deployed.one("Service", f"{SERVICE}-rollout-webhook")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == "markethub"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["markethub"]}
    # It selects the controller's Service and no other Service the program declares.
    selected = [
        s["metadata"]["name"]
        for s in deployed.of_kind("Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert selected == [f"{SERVICE}-rollout-webhook"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"], endpoint["honorLabels"]) == ("/metrics", "15s", True)
    # The operator's Prometheus selects it by the same labels as the rules.
    (rules, *_) = deployed.of_kind("PrometheusRule")
    assert {"release": "prometheus"}.items() <= monitor["metadata"]["labels"].items()
    assert {"release": "prometheus"}.items() <= rules["metadata"]["labels"].items()


def test_the_service_monitor_follows_the_rule_labels_and_the_scrape_interval(plan):
    custom = settings(
        alerts={"ruleLabels": {"prometheus": "platform"}},
        controller={"repository": REPOSITORY, "scrapeInterval": "30s"},
    )
    (monitor,) = deploy(custom, plan).of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["prometheus"] == "platform"
    assert monitor["spec"]["endpoints"][0]["interval"] == "30s"
    with pytest.raises(UserError, match=r"controller.scrapeInterval: Value error, not a Prometheus duration"):
        settings(controller={"repository": REPOSITORY, "scrapeInterval": "15 seconds"})


def test_a_gauge_name_the_controller_does_not_export_fails_the_program(plan):
    renamed = settings(alerts={"bridgeMetric": "team_measurement"})
    with pytest.raises(
        UserError, match=r"alerts.bridgeMetric: the controller exports markethub_rollout_measurement"
    ):
        deploy(renamed, plan)
    deploy(settings(alerts={"bridgeMetric": "team_measurement"}, controller={"enabled": False}), plan)
