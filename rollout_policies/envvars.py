"""Every environment variable the product reads, by name: the one registry for code, docs and tests.

The constants (``GIT_TOKEN = "ROLLOUT_GIT_TOKEN"``...) are the names the code reads and the Pulumi
program sets on the controller's Deployment (``infra/controller.py``), so the two cannot drift apart.
``READ`` holds every name the product's own code reads, with what it is for (a test scans the source
and keeps the two equal in both directions; ``docs/deploy.md`` lists them). ``TOOLS`` holds names
that the programs the product drives read (the Pulumi CLI, the AWS SDK, the Kubernetes client, git):
setting them is how a deployment configures those programs. ``plan_variables(plan)`` adds the names a
plan chooses (its notification and provider options). A workflow or a Deployment that sets a name in
none of these sets a variable nothing reads, such as ``PROMETHEUS_URL`` where the code reads
``ROLLOUT_PROMETHEUS_URL``.

This module imports nothing heavy (the plan model only for type checking): the CLI's option defaults
read it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rollout_policies.plan.model import Plan

# `rollout serve --token-env` default: the bearer token Alertmanager sends.
WEBHOOK_TOKEN = "ROLLOUT_WEBHOOK_TOKEN"
# The password (a GitHub token) git uses over https to fetch the rollout repository and push rollbacks.
GIT_TOKEN = "ROLLOUT_GIT_TOKEN"
# The user name sent with it; GitHub accepts any, ``x-access-token`` by convention.
GIT_USERNAME = "ROLLOUT_GIT_USERNAME"
DEFAULT_GIT_USERNAME = "x-access-token"
# The forge (GitHub) API token: promotion pull requests, and marking them stale after a rollback.
FORGE_TOKEN = "GITHUB_TOKEN"
# `--environment` default of `rollout promote` and `rollout deploy preview|up`: the one environment
# whose stacks a repository's CI promotes and deploys.
ENVIRONMENT = "ROLLOUT_ENVIRONMENT"
# The Pulumi CLI the production applier runs, when it is not `pulumi` on PATH.
PULUMI = "ROLLOUT_PULUMI"
# `rollout watch --prometheus` default, and the live Prometheus provider's address.
PROMETHEUS_URL = "ROLLOUT_PROMETHEUS_URL"
# The metric providers' settings (providers/settings.py): the controller's collector measures with them.
JSON_BASE_URLS = "ROLLOUT_JSON_BASE_URLS"
CLOUDWATCH_REGION = "ROLLOUT_CLOUDWATCH_REGION"
CLOUDWATCH_ENDPOINT_URL = "ROLLOUT_CLOUDWATCH_ENDPOINT_URL"
SQL_DSN = "ROLLOUT_SQL_DSN"
# `rollout audience select`: the secret salt of the cohort file's pseudonymous ids (never in git).
AUDIENCE_SALT = "ROLLOUT_AUDIENCE_SALT"
PROVIDER_TIMEOUT = "ROLLOUT_PROVIDER_TIMEOUT"
PROVIDER_ATTEMPTS = "ROLLOUT_PROVIDER_ATTEMPTS"

# Read by the Pulumi CLI the applier starts (it inherits the controller's environment), not by
# this package: where the stacks' state lives and how their secrets are encrypted.
PULUMI_BACKEND_URL = "PULUMI_BACKEND_URL"
PULUMI_CONFIG_PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"
PULUMI_ACCESS_TOKEN = "PULUMI_ACCESS_TOKEN"
READ_BY_PULUMI = (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE, PULUMI_ACCESS_TOKEN)

# Read by the AWS SDK the CloudWatch provider uses: static keys, for a pod without a web identity (IRSA).
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
READ_BY_AWS_SDK = (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)

READ = MappingProxyType(
    {
        # metric providers (providers/settings.py)
        PROMETHEUS_URL: "Prometheus server URL (providers, rollout watch)",
        CLOUDWATCH_ENDPOINT_URL: "CloudWatch endpoint; empty: AWS itself",
        CLOUDWATCH_REGION: "CloudWatch region; default AWS_REGION, AWS_DEFAULT_REGION",
        SQL_DSN: "analytics database DSN (metric gates, rollout audience select)",
        AUDIENCE_SALT: "secret salt of the cohort file's pseudonymous user ids (rollout audience select)",
        JSON_BASE_URLS: "JSON API base URLs by name: crash_reporter=https://...,issue_tracker=...",
        "ROLLOUT_METRICS_FILE": "the metrics file a metric with provider metrics_file reads",
        PROVIDER_TIMEOUT: "seconds per provider request",
        PROVIDER_ATTEMPTS: "tries per provider query",
        "AWS_REGION": "CloudWatch region when ROLLOUT_CLOUDWATCH_REGION is unset",
        "AWS_DEFAULT_REGION": "CloudWatch region when neither of the above is set",
        # forge and git (gitops/)
        GIT_USERNAME: "the https user name sent with ROLLOUT_GIT_TOKEN (default x-access-token)",
        "GIT_CONFIG_COUNT": "git's own config entries from the environment; the token's helper goes after",
        PULUMI_BACKEND_URL: "the Pulumi backend; a file:// backend's stale stack lock is cancelled",
        ENVIRONMENT: "the environment whose stacks CI promotes and deploys (default production)",
        FORGE_TOKEN: "token that opens promotion pull requests (a GitHub App's, so they start previews)",
        "GITHUB_REPOSITORY": "owner/name of the repository on the forge (default of --forge-repo)",
        "GITHUB_API_URL": "forge API base URL (default of --forge-url)",
        "GITHUB_ACTOR": "who runs a decision, for the audit trail",
        "PAGERDUTY_EVENTS_URL": "PagerDuty Events API address override (a local receiver in tests)",
        # the controller (rollout serve, rollout rollback --apply)
        WEBHOOK_TOKEN: "shared bearer token Alertmanager sends to rollout serve",
        PULUMI: "path of the Pulumi CLI the applier runs (default: pulumi on PATH)",
        "PATH": "where the applier finds `pulumi` when ROLLOUT_PULUMI is unset",
        "PULUMI_STACK": "the stack a policy pack checks (the Pulumi CLI sets it for the analyzer)",
        # drills (cli/drill_cmd.py, runbooks/)
        "AWS_ENDPOINT_URL": "AWS endpoint for the drills (a moto server locally)",
        AWS_ACCESS_KEY_ID: "AWS key; the drills use test keys against a local endpoint when unset",
        "AWS_PROFILE": "AWS profile; as above",
        "DRILL_SOURCE_DSN": "the database the restore drill marks its recovery target in and checks against",
        AWS_SECRET_ACCESS_KEY: "AWS secret; `rollout drill backup` hands the AWS keys to pgBackRest",
        "PGBACKREST_REPO1_S3_KEY_TYPE": "pgBackRest S3 credentials kind; the drills fill in keys when unset",
        "PGBACKREST_REPO1_STORAGE_VERIFY_TLS": "pgBackRest: n for the rig's loopback S3 (test keys then)",
        "ROLLOUT_REPORTS_GIT_URL": "git repository drill reports are pushed to (reports/drills/)",
        GIT_TOKEN: "token that may push drill reports to ROLLOUT_REPORTS_GIT_URL (https)",
        "PGCONNECT_TIMEOUT": "libpq connect timeout of the PostgreSQL programs the drills run",
    }
)

TOOLS = MappingProxyType(
    {
        PULUMI_BACKEND_URL: "Pulumi CLI: the state backend (s3://..., https://api.pulumi.com)",
        PULUMI_CONFIG_PASSPHRASE: "Pulumi CLI: passphrase of the passphrase secrets provider",
        PULUMI_ACCESS_TOKEN: "Pulumi CLI: token for Pulumi Cloud",
        "PULUMI_SKIP_UPDATE_CHECK": "Pulumi CLI: no update check",
        "PULUMI_HOME": "Pulumi CLI: plugins and credentials folder",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "Pulumi CLI: never download plugins",
        "KUBECONFIG": "Kubernetes client and provider: the clusters (a context per region, named by each "
        "stack's kubernetes:context)",
        AWS_SECRET_ACCESS_KEY: "AWS SDK: secret of AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN": "AWS SDK: session token",
        "AWS_ROLE_ARN": "AWS SDK: role assumed with a web identity (OIDC)",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "AWS SDK: web identity token (OIDC)",
        # pgBackRest reads its options from PGBACKREST_<OPTION> (runbooks/pgbackrest.py sets these).
        **{
            f"PGBACKREST_{name}": f"pgBackRest: {name.lower().replace('_', '-')}"
            for name in (
                "STANZA",
                "REPO1_TYPE",
                "REPO1_PATH",
                "REPO1_S3_BUCKET",
                "REPO1_S3_REGION",
                "REPO1_S3_ENDPOINT",
                "REPO1_STORAGE_PORT",
                "REPO1_S3_URI_STYLE",
                "REPO1_STORAGE_VERIFY_TLS",
                "REPO1_S3_KEY_TYPE",
                "REPO1_S3_KEY",
                "REPO1_S3_KEY_SECRET",
                "REPO1_RETENTION_FULL_TYPE",
                "REPO1_RETENTION_FULL",
                "REPO1_RETENTION_ARCHIVE_TYPE",
                "COMPRESS_TYPE",
                "START_FAST",
                "LOG_LEVEL_CONSOLE",
                "LOG_LEVEL_FILE",
                "LOCK_PATH",
                "PG1_PATH",
                "PG1_PORT",
                "PG1_USER",
                "PG1_SOCKET_PATH",
                "PG1_HOST",
                "PG1_HOST_TYPE",
                "PG1_HOST_CA_FILE",
                "PG1_HOST_CERT_FILE",
                "PG1_HOST_KEY_FILE",
            )
        },
    }
)


def plan_variables(plan: Plan) -> frozenset[str]:
    """The names a plan chooses: notification secrets and provider options (``*_env``)."""
    names = {
        name
        for name in (plan.notifications.slack_webhook_env, plan.notifications.pagerduty_routing_key_env)
        if name
    }
    for metric in plan.metrics:
        for key, value in metric.source.options.items():
            if key.endswith("_env") and isinstance(value, str) and value:
                names.add(value)
    return frozenset(names)


def known(plan: Plan | None = None) -> frozenset[str]:
    """Every name something reads: the product, the tools it drives, and the plan's choices."""
    return frozenset(READ) | frozenset(TOOLS) | (plan_variables(plan) if plan is not None else frozenset())
