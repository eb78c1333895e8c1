"""RolloutController: ``rollout serve`` deployed beside the service it rolls back.

A Deployment runs the tool's image (Dockerfile) with ``rollout serve``: it clones the rollout
repository into an empty volume, listens for Alertmanager's webhook, commits each rollback to main
and applies it with the Pulumi CLI in the image (``pulumi up --target`` of the HTTPRoute), as the
pod's ServiceAccount. A Service gives Alertmanager its address; a Role allows exactly what the
controller does to the cluster: read and update the HTTPRoute, read the Deployments.

Secrets are referenced by name and key, never created here (no secret value goes through the
program or its state): the webhook token, the git credentials, the forge token (a rollback marks the
stack's open promotion pull requests stale), the Pulumi backend's credentials and the notification
addresses. docs/deploy.md says how a team creates them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from infra import kube, naming
from infra.flags import config_map_name
from infra.kube import Manifest
from infra.settings import NAMESPACE as CONFIG_NAMESPACE
from infra.settings import Controller
from rollout_policies import envvars
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Metric, Notifications

COMPONENT = "rollout-controller"
WORK_DIR = "/var/lib/rollout"  # an empty volume: the clone lives here, relative paths start here
CLONE = "repo"
WATCH_CLONE = "repo-watch"
POD_IP = "POD_IP"
HTTP = "http"
# Keys of the referenced Secrets (docs/deploy.md).
TOKEN_KEY = "token"
USERNAME_KEY = "username"
BACKEND_KEY = "backend-url"
PASSPHRASE_KEY = "config-passphrase"
ACCESS_TOKEN_KEY = "access-token"
SLACK_KEY = "slack-webhook-url"
PAGERDUTY_KEY = "pagerduty-routing-key"
SQL_DSN_KEY = "sql-dsn"
AWS_ACCESS_KEY_ID_KEY = "aws-access-key-id"
AWS_SECRET_ACCESS_KEY_KEY = "aws-secret-access-key"
# EKS IAM roles for service accounts: the pod gets AWS_ROLE_ARN and a web identity token file.
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
METRICS_PATH = "/metrics"
SERVICE_LABEL = "rollout.markethub.io/service"
RUN_AS = 10001  # the image's `rollout` user (Dockerfile)


@dataclass(frozen=True)
class ControllerArgs:
    service: str
    namespace: str
    stack: str
    plan_path: str
    notifications: Notifications
    controller: Controller
    # The stack's region: the CloudWatch region unless controller.providers names another.
    region: str = ""
    # The metrics the controller's collector measures and exports (infra.alerts.bridged_metric_ids):
    # the provider settings the serve container gets are the ones these need.
    collected: tuple[Metric, ...] = ()
    # Labels on the ServiceMonitor: what the operator's serviceMonitorSelector matches (alerts.ruleLabels).
    monitor_labels: Mapping[str, str] = field(default_factory=dict)


def names(service: str) -> dict[str, str]:
    """Every object's name: the service as prefix, so two services can share a namespace."""
    return {
        "deployment": f"{service}-rollout",
        "service_account": f"{service}-rollout",
        "role": f"{service}-rollout",
        "service": f"{service}-rollout-webhook",
    }


def webhook_url(service: str, namespace: str, port: int = 8080) -> str:
    """Where Alertmanager posts: the controller's Service, in cluster DNS."""
    return f"http://{names(service)['service']}.{namespace}.svc:{port}/alerts"


def labels(args: ControllerArgs) -> dict[str, str]:
    # Named for itself, not for the service: the service's public Service selects every pod
    # labelled with the service's name, and must never send users to the controller.
    return {
        **naming.base_labels(names(args.service)["deployment"], COMPONENT),
        "app.kubernetes.io/instance": args.stack,
        SERVICE_LABEL: args.service,
    }


def selector(args: ControllerArgs) -> dict[str, str]:
    return {naming.NAME: names(args.service)["deployment"], naming.COMPONENT: COMPONENT}


def _metadata(args: ControllerArgs, kind: str) -> Manifest:
    return {"name": names(args.service)[kind], "namespace": args.namespace, "labels": labels(args)}


def _secret(name: str, secret: str, key: str, *, optional: bool = False) -> Manifest:
    ref: Manifest = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def plan_argument(args: ControllerArgs, clone: str) -> str:
    """The plan inside the clone: the stack's ``plan`` is relative to the project (Pulumi.yaml)."""
    if posixpath.isabs(args.plan_path):
        return args.plan_path
    return posixpath.normpath(posixpath.join(clone, args.controller.config_dir, args.plan_path))


def common_env(args: ControllerArgs) -> list[Manifest]:
    """What both commands read: git, Pulumi and notification credentials, all from Secrets."""
    c = args.controller
    env: list[Manifest] = []
    if c.repository.startswith("https://"):
        env += [
            _secret(envvars.GIT_TOKEN, c.git_secret, TOKEN_KEY),
            _secret(envvars.GIT_USERNAME, c.git_secret, USERNAME_KEY, optional=True),
        ]
    if forge_repository(c):
        env.append(_secret(envvars.FORGE_TOKEN, c.forge_secret, TOKEN_KEY))
    env += [
        _secret(envvars.PULUMI_BACKEND_URL, c.pulumi_secret, BACKEND_KEY),
        _secret(envvars.PULUMI_CONFIG_PASSPHRASE, c.pulumi_secret, PASSPHRASE_KEY, optional=True),
        _secret(envvars.PULUMI_ACCESS_TOKEN, c.pulumi_secret, ACCESS_TOKEN_KEY, optional=True),
    ]
    # The plan names the variables; a team without Slack or PagerDuty leaves the keys out.
    if args.notifications.slack_webhook_env:
        env.append(_secret(args.notifications.slack_webhook_env, c.notify_secret, SLACK_KEY, optional=True))
    if args.notifications.pagerduty_routing_key_env:
        env.append(
            _secret(
                args.notifications.pagerduty_routing_key_env, c.notify_secret, PAGERDUTY_KEY, optional=True
            )
        )
    return env


def token_key(variable: str) -> str:
    """The providers Secret's key for a plan's ``token_env`` variable: ``CRASH_TOKEN`` -> ``crash-token``."""
    return variable.lower().replace("_", "-")


def _json_base(metric: Metric) -> str | None:
    """The base URL name a json_http metric needs from ``controller.providers.jsonBaseUrls``."""
    options = metric.source.options
    target = metric.source.query.strip() if options.get("field") else str(options.get("path") or "")
    if target.startswith(("http://", "https://")):
        return None
    return str(options.get("base") or options.get("url_env") or "") or None


def provider_env(args: ControllerArgs) -> list[Manifest]:
    """What the collector's providers read (``ProviderSettings.from_env``), for the providers of
    ``args.collected`` only: settings from the stack config, credentials from the providers Secret.

    A JSON API the plan names without a base URL in the stack config fails the program with one line
    (``pulumi preview`` shows it), not a controller whose trigger cannot fire.
    """
    c = args.controller
    p = c.providers
    providers = {metric.source.provider for metric in args.collected}
    env: list[Manifest] = []
    if "json_http" in providers:
        json_metrics = [m for m in args.collected if m.source.provider == "json_http"]
        for metric in json_metrics:
            base = _json_base(metric)
            if base is not None and base not in p.json_base_urls:
                raise UserError(
                    f"Pulumi.{args.stack}.yaml: {CONFIG_NAMESPACE}:controller.providers.jsonBaseUrls: "
                    f"no URL for {base!r} (the plan's metric {metric.id} reads it)"
                )
        if p.json_base_urls:
            urls = ",".join(f"{name}={url}" for name, url in sorted(p.json_base_urls.items()))
            env.append({"name": envvars.JSON_BASE_URLS, "value": urls})
        tokens = sorted(
            {str(m.source.options["token_env"]) for m in json_metrics if m.source.options.get("token_env")}
        )
        env += [_secret(variable, c.providers_secret, token_key(variable)) for variable in tokens]
    if "cloudwatch" in providers:
        env.append({"name": envvars.CLOUDWATCH_REGION, "value": p.cloudwatch_region or args.region})
        if p.cloudwatch_endpoint_url:
            env.append({"name": envvars.CLOUDWATCH_ENDPOINT_URL, "value": p.cloudwatch_endpoint_url})
        # Optional: without them the AWS SDK takes the pod's web identity (aws_role_arn, IRSA).
        env += [
            _secret(envvars.AWS_ACCESS_KEY_ID, c.providers_secret, AWS_ACCESS_KEY_ID_KEY, optional=True),
            _secret(
                envvars.AWS_SECRET_ACCESS_KEY, c.providers_secret, AWS_SECRET_ACCESS_KEY_KEY, optional=True
            ),
        ]
    if "sql" in providers:
        env.append(_secret(envvars.SQL_DSN, c.providers_secret, SQL_DSN_KEY))
    if providers and p.timeout is not None:
        env.append({"name": envvars.PROVIDER_TIMEOUT, "value": f"{p.timeout:g}"})
    if providers and p.attempts is not None:
        env.append({"name": envvars.PROVIDER_ATTEMPTS, "value": str(p.attempts)})
    return env


def forge_repository(controller: Controller) -> str:
    """owner/name on GitHub: the setting, else read from a github.com https URL, else none."""
    if controller.forge_repository:
        return controller.forge_repository
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", controller.repository)
    return f"{match.group(1)}/{match.group(2)}" if match else ""


def repository_args(args: ControllerArgs, clone: str) -> list[str]:
    c = args.controller
    found = ["--repo", clone, "--clone-from", c.repository, "--main", c.branch]
    if c.config_dir:
        found += ["--config-dir", c.config_dir]
    if forge_repository(c):
        found += ["--forge-repo", forge_repository(c)]
        if c.forge_url:
            found += ["--forge-url", c.forge_url]
    return [
        *found,
        "--plan",
        plan_argument(args, clone),
        "--stack",
        args.stack,
        "--apply",
        "--applier",
        "pulumi",
        "--actor",
        f"rollout-controller/{args.stack}",
    ]


def _security() -> Manifest:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def serve_container(args: ControllerArgs) -> Manifest:
    c = args.controller
    probe = {"httpGet": {"path": "/healthz", "port": HTTP}, "periodSeconds": 10}
    return {
        "name": "serve",
        "image": c.image,
        "command": ["rollout"],
        "args": [
            "serve",
            # The pod's own address: Kubernetes fills it in from the env var below.
            "--listen",
            f"$({POD_IP}):{c.port}",
            "--token-env",
            envvars.WEBHOOK_TOKEN,
            *repository_args(args, CLONE),
        ],
        "workingDir": WORK_DIR,
        "env": [
            {"name": POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            _secret(envvars.WEBHOOK_TOKEN, c.webhook_secret, TOKEN_KEY),
            *common_env(args),
            *provider_env(args),
        ],
        "ports": [{"name": HTTP, "containerPort": c.port, "protocol": "TCP"}],
        # The first clone and plan load come before the listener: give them up to five minutes.
        "startupProbe": {**probe, "failureThreshold": 30},
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "resources": {"requests": dict(c.resources.requests), "limits": dict(c.resources.limits)},
        "securityContext": _security(),
        "volumeMounts": [{"name": "work", "mountPath": WORK_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def watch_container(args: ControllerArgs) -> Manifest:
    c = args.controller
    return {
        "name": "watch",
        "image": c.image,
        "command": ["rollout"],
        "args": ["watch", "--prometheus", c.prometheus_url, *repository_args(args, WATCH_CLONE)],
        "workingDir": WORK_DIR,
        "env": common_env(args),
        "resources": {"requests": dict(c.resources.requests), "limits": dict(c.resources.limits)},
        "securityContext": _security(),
        "volumeMounts": [{"name": "work", "mountPath": WORK_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def deployment_manifest(args: ControllerArgs) -> Manifest:
    containers = [serve_container(args)]
    if args.controller.watch:
        containers.append(watch_container(args))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(args, "deployment"),
        "spec": {
            "replicas": 1,
            # Never two controllers at once: each would post its own notices for one rollback.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(args)},
            "template": {
                "metadata": {"labels": {**labels(args), **selector(args)}},
                "spec": {
                    "serviceAccountName": names(args.service)["service_account"],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": containers,
                    "volumes": [{"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def service_manifest(args: ControllerArgs) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(args, "service"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(args),
            "ports": [{"name": HTTP, "port": args.controller.port, "targetPort": HTTP, "protocol": "TCP"}],
        },
    }


def service_account_manifest(args: ControllerArgs) -> Manifest:
    metadata: Manifest = {
        "name": names(args.service)["service_account"],
        "namespace": args.namespace,
        "labels": labels(args),
    }
    if args.controller.aws_role_arn:
        metadata["annotations"] = {IRSA_ANNOTATION: args.controller.aws_role_arn}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}


def service_monitor_manifest(args: ControllerArgs) -> Manifest:
    """Prometheus scrapes the controller's /metrics: the gauge the rules read for non-Prometheus metrics."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": names(args.service)["service"],
            "namespace": args.namespace,
            "labels": {**labels(args), **args.monitor_labels},
        },
        "spec": {
            "selector": {"matchLabels": selector(args)},
            "namespaceSelector": {"matchNames": [args.namespace]},
            "endpoints": [
                {
                    "port": HTTP,
                    "path": METRICS_PATH,
                    "scheme": "http",
                    "interval": args.controller.scrape_interval,
                    # The operator sets a target label `service` (the Kubernetes Service's name);
                    # the rules select the gauge's own `service` label (the plan's service): keep it.
                    "honorLabels": True,
                }
            ],
        },
    }


# What the controller does to the cluster, and nothing more: the apply is `pulumi up --target` of
# the HTTPRoute (read, dry-run and real server-side apply); live state reads the route and the
# Deployments. Everything else the program declares is applied by CI, never by the controller.
RULES: tuple[Manifest, ...] = (
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes"],
        "verbs": ["get", "list", "watch", "patch", "update"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
)


def rules(args: ControllerArgs) -> list[Manifest]:
    """RULES, and the stage's flags ConfigMap: a rollback restores the stable flags too.

    The provider treats a ConfigMap as immutable, so new flags replace it (delete, then create under
    the same name, waiting for the delete with list and watch). Delete is limited to that name;
    Kubernetes cannot limit create, list or watch by name, so the controller may read the namespace's
    ConfigMaps (never its Secrets).
    """
    flags = {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [config_map_name(args.service)],
        "verbs": ["get", "patch", "update", "delete"],
    }
    # create cannot be limited by name; list and watch are how the provider waits for the delete.
    replace = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "watch"]}
    return [*(dict(rule) for rule in RULES), flags, replace]


def role_manifest(args: ControllerArgs) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(args, "role"),
        "rules": rules(args),
    }


def role_binding_manifest(args: ControllerArgs) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(args, "role"),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": names(args.service)["role"],
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": names(args.service)["service_account"],
                "namespace": args.namespace,
            }
        ],
    }


def manifests(args: ControllerArgs) -> dict[str, Manifest]:
    """Every object of the controller by its logical suffix, in the order they are declared."""
    return {
        "service-account": service_account_manifest(args),
        "role": role_manifest(args),
        "role-binding": role_binding_manifest(args),
        "service": service_manifest(args),
        "deployment": deployment_manifest(args),
        "service-monitor": service_monitor_manifest(args),
    }


class RolloutController(pulumi.ComponentResource):
    """The controller's Deployment, Service, ServiceAccount and RBAC (Secrets are referenced only)."""

    def __init__(self, name: str, args: ControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:RolloutController", name, None, opts)
        child = kube.child_options(self, opts)
        declared = manifests(args)
        objects = {}
        for suffix in ("service-account", "role", "role-binding", "service"):
            objects[suffix] = kube.apply(f"{name}-{suffix}", declared[suffix], child)
        # The pod starts once its account and rights exist.
        self.deployment = kube.apply(
            f"{name}-deployment",
            declared["deployment"],
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[*(child.depends_on or []), *objects.values()],  # type: ignore[misc]
            ),
        )
        self.service = objects["service"]
        self.service_monitor = kube.apply(f"{name}-service-monitor", declared["service-monitor"], child)
        c = args.controller
        self.register_outputs(
            {
                "webhookUrl": webhook_url(args.service, args.namespace, c.port),
                "secrets": sorted(
                    {
                        c.webhook_secret,
                        c.pulumi_secret,
                        c.notify_secret,
                        c.git_secret,
                        c.forge_secret,
                        c.providers_secret,
                    }
                ),
            }
        )
