#!/usr/bin/env bash
# Lints .github/workflows with actionlint, built from its Go module (no release download needed)
# into the project's tool cache outside the work tree. The Makefile's `lint` target calls this.
#
#   .github/lint-workflows.sh            install actionlint if missing, then lint every workflow
set -euo pipefail

ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}
CACHE=${MARKETHUB_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/markethub-rollout/tools}
BIN=$CACHE/bin
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

installed_version() { "$BIN/actionlint" -version 2>/dev/null | head -1; }

if [[ "$(installed_version)" != "${ACTIONLINT_VERSION}" ]]; then
  command -v go >/dev/null || { echo "[actionlint] error: go is needed to build actionlint" >&2; exit 2; }
  echo "[actionlint] building github.com/rhysd/actionlint ${ACTIONLINT_VERSION} into $BIN" >&2
  mkdir -p "$BIN"
  GOBIN=$BIN GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    go install "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}"
fi

# shellcheck and pyflakes checks of run: blocks are used when those tools are on PATH.
cd "$here/.."
exec "$BIN/actionlint" -no-color .github/workflows/*.yml
