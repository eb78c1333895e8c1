# The controller's image: `rollout serve` / `rollout watch` (and the drills' CronJobs), with git and the
# Pulumi CLI and Kubernetes provider its apply runs. Small and non-root: python:3.11-slim, the package
# in a virtualenv, no compiler or pip cache in the final stage. docs/deploy.md says how to build it:
#
#   docker build -t ghcr.io/<org>/markethub-rollout:<version> .
#
# Versions come from the repository: Python packages from requirements.lock when there is one
# (pip install --require-hashes), else the exact pins in pyproject.toml; Pulumi and its Kubernetes
# provider from tools/versions.env, the same pins the tests use.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- the package, in /opt/rollout
FROM ${PYTHON_IMAGE} AS package
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# requirements.lock* matches nothing when the repository has no lock file; pyproject.toml always exists.
COPY pyproject.toml README.md requirements.lock* ./
COPY rollout_policies ./rollout_policies
COPY infra ./infra
COPY runbooks ./runbooks
ARG VENV=/opt/rollout
RUN python -m venv "$VENV" \
 && if [ -f requirements.lock ]; then \
      "$VENV/bin/pip" install --require-hashes -r requirements.lock \
      && "$VENV/bin/pip" install --no-deps . ; \
    else \
      "$VENV/bin/pip" install . ; \
    fi \
 && "$VENV/bin/rollout" --help > /dev/null

# ---------------------------------------------------------------- the Pulumi CLI and provider, in /opt/pulumi
FROM ${PYTHON_IMAGE} AS pulumi
ARG TARGETARCH=amd64
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY tools/versions.env /tmp/versions.env
# The official releases, at the versions tools/versions.env pins (the CLI matches the `pulumi` Python
# package, the provider matches `pulumi-kubernetes`).
RUN set -eu; . /tmp/versions.env; \
    case "$TARGETARCH" in amd64) cli=x64 ;; arm64) cli=arm64 ;; *) echo "unsupported arch $TARGETARCH" >&2; exit 1 ;; esac; \
    curl -fsSL "https://get.pulumi.com/releases/sdk/pulumi-v${PULUMI_VERSION}-linux-${cli}.tar.gz" | tar -xz -C /opt; \
    curl -fsSL "https://github.com/pulumi/pulumi-kubernetes/releases/download/v${PULUMI_KUBERNETES_VERSION}/pulumi-resource-kubernetes-v${PULUMI_KUBERNETES_VERSION}-linux-${TARGETARCH}.tar.gz" \
      | tar -xz -C /opt/pulumi pulumi-resource-kubernetes; \
    /opt/pulumi/pulumi version | grep -qx "v${PULUMI_VERSION}"

# ---------------------------------------------------------------- the image
FROM ${PYTHON_IMAGE}
# pgbackrest: the database backup CronJobs; postgresql (server programs, /usr/lib/postgresql/*/bin):
# the restore drill starts a fresh PostgreSQL on the restored data folder.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates pgbackrest postgresql \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 rollout \
 && useradd --uid 10001 --gid 10001 --home-dir /home/rollout --create-home --shell /usr/sbin/nologin rollout \
 && install -d -o 10001 -g 10001 /var/lib/rollout
COPY --from=package /opt/rollout /opt/rollout
COPY --from=pulumi /opt/pulumi /opt/pulumi
# Plugins are found on PATH (the provider sits beside the CLI), so an apply never downloads one.
ENV PATH=/opt/rollout/bin:/opt/pulumi:/usr/local/bin:/usr/bin:/bin \
    PULUMI_SKIP_UPDATE_CHECK=true \
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/rollout
ENTRYPOINT ["rollout"]
CMD ["--help"]
