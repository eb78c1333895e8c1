"""The names of the environment variables the controller reads, shared by the code and the Deployment.

The Pulumi program (``infra/controller.py``) sets these on the controller's container and the code
reads them by the same constants, so the two cannot drift apart; ``docs/deploy.md`` lists them and a
test checks the list against every name the product reads.
"""

from __future__ import annotations

# `rollout serve --token-env` default: the bearer token Alertmanager sends.
WEBHOOK_TOKEN = "ROLLOUT_WEBHOOK_TOKEN"
# The password (a GitHub token) git uses over https to fetch the rollout repository and push rollbacks.
GIT_TOKEN = "ROLLOUT_GIT_TOKEN"
# The user name sent with it; GitHub accepts any, ``x-access-token`` by convention.
GIT_USERNAME = "ROLLOUT_GIT_USERNAME"
DEFAULT_GIT_USERNAME = "x-access-token"
# The forge (GitHub) API token: promotion pull requests, and marking them stale after a rollback.
FORGE_TOKEN = "GITHUB_TOKEN"
# The Pulumi CLI the production applier runs, when it is not `pulumi` on PATH.
PULUMI = "ROLLOUT_PULUMI"
# `rollout watch --prometheus` default, and the live Prometheus provider's address.
PROMETHEUS_URL = "ROLLOUT_PROMETHEUS_URL"
# The metric providers' settings (providers/settings.py): the controller's collector measures with them.
JSON_BASE_URLS = "ROLLOUT_JSON_BASE_URLS"
CLOUDWATCH_REGION = "ROLLOUT_CLOUDWATCH_REGION"
CLOUDWATCH_ENDPOINT_URL = "ROLLOUT_CLOUDWATCH_ENDPOINT_URL"
SQL_DSN = "ROLLOUT_SQL_DSN"
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
