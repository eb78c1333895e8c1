#!/usr/bin/env bash
# Installs the project's tools (Pulumi CLI and Kubernetes provider, a Kubernetes control plane,
# etcd, kwok, the CRDs, Debian's Prometheus/Alertmanager/PostgreSQL) into a versioned cache
# outside the work tree.
#
# For each tool, in order: already on PATH at the pinned version; the official release download;
# a build from its Go module. A filled cache makes a second run take seconds.
#
#   tools/toolchain.sh install     install everything missing, print progress
#   tools/toolchain.sh bin         print the folder that holds every tool (prepend it to PATH)
#   tools/toolchain.sh check       exit 1 unless every tool is installed
#   tools/toolchain.sh install-pulumi   only the Pulumi CLI and Kubernetes provider (CI's deploy jobs)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

CACHE=${MARKETHUB_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/markethub-rollout/tools}
BIN=$CACHE/bin
SRC=$CACHE/src
DOWNLOAD_TIMEOUT=${MARKETHUB_DOWNLOAD_TIMEOUT:-20}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$BIN" "$SRC"

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 2; }

# link NAME PATH: make PATH the tool NAME in the shared bin folder.
link() { ln -sfn "$2" "$BIN/$1"; }

# on_path NAME EXPECTED ARGS...: true (and links it) when NAME on PATH prints EXPECTED for ARGS.
on_path() {
  local name=$1 expected=$2; shift 2
  local found
  found=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$BIN" | paste -sd:) command -v "$name" 2>/dev/null) || return 1
  if "$found" "$@" 2>&1 | grep -qF -- "$expected"; then
    log "$name: using $found ($expected)"
    link "$name" "$found"
    return 0
  fi
  return 1
}

# fetch URL FILE: the official release download, bounded in time; false when unreachable.
fetch() {
  curl -fsSL --connect-timeout "$DOWNLOAD_TIMEOUT" --max-time 600 -o "$2" "$1" 2>/dev/null
}

# timed LABEL CMD...: run a build step, printing how long it took.
timed() {
  local label=$1 start=$SECONDS; shift
  log "$label ..."
  "$@"
  log "$label done in $((SECONDS - start))s"
}

module_dir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

# ---------------------------------------------------------------- Pulumi CLI
install_pulumi() {
  local v=$PULUMI_VERSION dest=$CACHE/pulumi-$PULUMI_VERSION
  if [ -x "$dest/pulumi" ]; then link pulumi "$dest/pulumi"; return; fi
  on_path pulumi "v$v" version && return
  mkdir -p "$dest"
  if fetch "https://get.pulumi.com/releases/sdk/pulumi-v$v-linux-x64.tar.gz" "$SRC/pulumi.tgz"; then
    log "pulumi: official release v$v"
    tar -xzf "$SRC/pulumi.tgz" -C "$dest" --strip-components=1
  else
    log "pulumi: release download unreachable; building v$v from its Go module (cold: about 10 minutes)"
    local w=$SRC/pulumi-cli-$v
    mkdir -p "$w"
    cat > "$w/go.mod" <<EOF
module markethub.local/pulumi-cli

go 1.24

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
    (cd "$w" && timed "pulumi: resolving modules" go get "github.com/pulumi/pulumi/pkg/v3@v$v" "github.com/pulumi/pulumi/sdk/v3@v$v" "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$v" \
      && timed "pulumi: compiling" go build -tags osusergo,grpcnotrace \
        -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v" \
        -o "$dest/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  fi
  link pulumi "$dest/pulumi"
  # The release ships the Python language host; the Go module proxy serves no version of it, so a
  # built CLI runs Python programs through the Automation API's in-process host instead.
  if [ -x "$dest/pulumi-language-python" ]; then
    link pulumi-language-python "$dest/pulumi-language-python"
    link pulumi-language-python-exec "$dest/pulumi-language-python-exec"
  fi
}

# ---------------------------------------------------------------- Kubernetes provider
install_provider() {
  local v=$PULUMI_KUBERNETES_VERSION dest=$CACHE/pulumi-resource-kubernetes-$PULUMI_KUBERNETES_VERSION
  if [ -x "$dest/pulumi-resource-kubernetes" ]; then link pulumi-resource-kubernetes "$dest/pulumi-resource-kubernetes"; return; fi
  mkdir -p "$dest"
  if fetch "https://github.com/pulumi/pulumi-kubernetes/releases/download/v$v/pulumi-resource-kubernetes-v$v-linux-amd64.tar.gz" "$SRC/provider.tgz"; then
    log "pulumi-resource-kubernetes: official release v$v"
    tar -xzf "$SRC/provider.tgz" -C "$dest"
  else
    log "pulumi-resource-kubernetes: release download unreachable; building v$v from its Go module (cold: about 10 minutes)"
    local m=$SRC/provider-module-$v w=$SRC/provider-wrapper-$v dir
    dir=$(module_dir "github.com/pulumi/pulumi-kubernetes/provider/v4@$PULUMI_KUBERNETES_PROVIDER_MODULE")
    rm -rf "$m" && cp -r "$dir" "$m" && chmod -R u+w "$m"
    # The module's own replace points at ../sdk, which the module zip does not carry.
    sed -i 's#^replace github.com/pulumi/pulumi-kubernetes/sdk/v4 => ../sdk#replace github.com/pulumi/pulumi-kubernetes/sdk/v4 => github.com/pulumi/pulumi-kubernetes/sdk/v4 '"$PULUMI_KUBERNETES_SDK_MODULE"'#' "$m/go.mod"
    (cd "$m/cmd/pulumi-resource-kubernetes" && VERSION="$v" go run ./generate.go)
    mkdir -p "$w"
    cat > "$w/go.mod" <<EOF
module markethub.local/provider

go 1.24

require github.com/pulumi/pulumi-kubernetes/provider/v4 v4.0.0

replace github.com/pulumi/pulumi-kubernetes/provider/v4 => $m

replace github.com/pulumi/pulumi-kubernetes/sdk/v4 => github.com/pulumi/pulumi-kubernetes/sdk/v4 $PULUMI_KUBERNETES_SDK_MODULE
EOF
    grep -E '^replace ' "$m/go.mod" | grep -v 'pulumi-kubernetes/sdk/v4' >> "$w/go.mod" || true
    printf 'package main\n\nimport _ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"\n' > "$w/tools.go"
    (cd "$w" && cp "$m/go.sum" go.sum && timed "pulumi-resource-kubernetes: resolving modules" go mod tidy \
      && timed "pulumi-resource-kubernetes: compiling" go build \
        -ldflags "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$v" \
        -o "$dest/pulumi-resource-kubernetes" github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes)
  fi
  link pulumi-resource-kubernetes "$dest/pulumi-resource-kubernetes"
}

# ---------------------------------------------------------------- Kubernetes control plane
K8S_COMMANDS="kube-apiserver kube-controller-manager kube-scheduler kubectl"
install_kubernetes() {
  local v=$KUBERNETES_VERSION dest=$CACHE/kubernetes-$KUBERNETES_VERSION cmd missing=""
  for cmd in $K8S_COMMANDS; do
    if [ -x "$dest/$cmd" ]; then link "$cmd" "$dest/$cmd"; continue; fi
    if [ "$cmd" = kubectl ]; then on_path kubectl "v$v" version --client && continue
    else on_path "$cmd" "Kubernetes v$v" --version && continue; fi
    missing="$missing $cmd"
  done
  [ -n "$missing" ] || return 0
  mkdir -p "$dest"
  local all_fetched=yes
  for cmd in $missing; do
    if fetch "https://dl.k8s.io/v$v/bin/linux/amd64/$cmd" "$dest/$cmd.part"; then
      mv "$dest/$cmd.part" "$dest/$cmd" && chmod +x "$dest/$cmd" && log "$cmd: official release v$v"
    else
      rm -f "$dest/$cmd.part"; all_fetched=no; break
    fi
  done
  if [ "$all_fetched" = no ]; then
    log "kubernetes: release download unreachable; building v$v from k8s.io/kubernetes (cold: about 15 minutes)"
    local w=$SRC/kubernetes-$v minor=${v#*.}; minor=${minor%%.*}
    mkdir -p "$w"
    {
      printf 'module markethub.local/kubernetes\n\ngo 1.24\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$v"
      curl -fsSL --max-time 60 "$(go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/v$v.mod" \
        | sed -n '/^replace (/,/^)/p' | grep '=> ./staging' \
        | awk -v ver="v0.${v#1.}" '{print "\t" $1 " => " $1 " " ver}'
      printf ')\n'
    } > "$w/go.mod"
    local ldflags="-X k8s.io/component-base/version.gitVersion=v$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    (cd "$w" && timed "kubernetes: resolving modules" go get "k8s.io/kubernetes@v$v")
    for cmd in $missing; do
      [ -x "$dest/$cmd" ] && continue
      (cd "$w" && timed "kubernetes: compiling $cmd" go build -ldflags "$ldflags" -o "$dest/$cmd" "k8s.io/kubernetes/cmd/$cmd")
    done
  fi
  for cmd in $K8S_COMMANDS; do link "$cmd" "$dest/$cmd"; done
}

# ---------------------------------------------------------------- etcd
install_etcd() {
  local v=$ETCD_VERSION dest=$CACHE/etcd-$ETCD_VERSION
  if [ -x "$dest/etcd" ]; then link etcd "$dest/etcd"; return; fi
  on_path etcd "etcd Version: $v" --version && return
  mkdir -p "$dest"
  if fetch "https://github.com/etcd-io/etcd/releases/download/v$v/etcd-v$v-linux-amd64.tar.gz" "$SRC/etcd.tgz"; then
    log "etcd: official release v$v"
    tar -xzf "$SRC/etcd.tgz" -C "$dest" --strip-components=1
  else
    log "etcd: release download unreachable; building v$v from go.etcd.io/etcd/server/v3"
    local w=$SRC/etcd-$v
    mkdir -p "$w"
    cat > "$w/go.mod" <<EOF
module markethub.local/etcd

go 1.24

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v$v
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 v$v
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 v$v
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 v$v
)
EOF
    (cd "$w" && timed "etcd: resolving modules" go get "go.etcd.io/etcd/server/v3@v$v" \
      && timed "etcd: compiling" go build -o "$dest/etcd" go.etcd.io/etcd/server/v3)
  fi
  link etcd "$dest/etcd"
}

# ---------------------------------------------------------------- kwok
install_kwok() {
  local v=$KWOK_VERSION dest=$CACHE/kwok-$KWOK_VERSION cmd
  if [ -x "$dest/kwok" ] && [ -x "$dest/kwokctl" ]; then link kwok "$dest/kwok"; link kwokctl "$dest/kwokctl"; return; fi
  mkdir -p "$dest"
  for cmd in kwok kwokctl; do
    [ -x "$dest/$cmd" ] && continue
    if fetch "https://github.com/kubernetes-sigs/kwok/releases/download/v$v/$cmd-linux-amd64" "$dest/$cmd.part"; then
      mv "$dest/$cmd.part" "$dest/$cmd" && chmod +x "$dest/$cmd" && log "$cmd: official release v$v"
    else
      rm -f "$dest/$cmd.part"
      log "$cmd: release download unreachable; building v$v from sigs.k8s.io/kwok"
      timed "$cmd: compiling" env GOBIN="$dest" go install \
        -ldflags "-X sigs.k8s.io/kwok/pkg/consts.Version=v$v" "sigs.k8s.io/kwok/cmd/$cmd@v$v"
    fi
  done
  link kwok "$dest/kwok"; link kwokctl "$dest/kwokctl"
}

# ---------------------------------------------------------------- CRDs
install_crds() {
  local dest=$CACHE/crds-gw$GATEWAY_API_VERSION-velero$VELERO_VERSION-promop$PROMETHEUS_OPERATOR_VERSION d
  if [ -f "$dest/.complete" ]; then ln -sfn "$dest" "$CACHE/crds"; return; fi
  mkdir -p "$dest"
  log "crds: Gateway API v$GATEWAY_API_VERSION, Velero v$VELERO_VERSION, prometheus-operator v$PROMETHEUS_OPERATOR_VERSION"
  d=$(module_dir "sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION")
  cp "$d"/config/crd/standard/*.yaml "$dest/"
  d=$(module_dir "github.com/vmware-tanzu/velero@v$VELERO_VERSION")
  cp "$d"/config/crd/v1/bases/*.yaml "$dest/"
  d=$(module_dir "github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION")
  cp "$d"/example/prometheus-operator-crd/*.yaml "$dest/"
  chmod u+w "$dest"/*.yaml
  touch "$dest/.complete"
  ln -sfn "$dest" "$CACHE/crds"
}

# ---------------------------------------------------------------- Debian packages
install_debian() {
  local missing="" exe pkg
  # chromium: the report tests render HTML reports headless. pgbackrest: database backups (full,
  # incremental, WAL archive) and the point-in-time restore drill.
  for pair in prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager pg_ctl:postgresql pgbackrest:pgbackrest git:git chromium:chromium; do
    exe=${pair%%:*}; pkg=${pair#*:}
    if [ "$exe" = pg_ctl ]; then ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && continue
    else command -v "$exe" >/dev/null 2>&1 && continue; fi
    missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    command -v apt-get >/dev/null || die "missing Debian packages:$missing (no apt-get here: install them by hand)"
    log "debian: installing$missing"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  # PostgreSQL's server binaries are off PATH in Debian; expose the installed major version.
  local pgbin
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  for exe in pg_ctl initdb postgres pg_dump pg_restore psql; do
    [ -x "$pgbin/$exe" ] && link "$exe" "$pgbin/$exe"
  done
  # Look outside our own bin folder, which may already hold (possibly stale) links of these names.
  local system_path
  system_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$BIN" | paste -sd:)
  link prometheus "$(PATH=$system_path command -v prometheus)"
  link alertmanager "$(PATH=$system_path command -v prometheus-alertmanager || PATH=$system_path command -v alertmanager)"
  # Debian's postinst starts system services; this project starts its own on loopback ports.
  return 0
}

check() {
  local ok=0 t
  for t in pulumi pulumi-resource-kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl prometheus alertmanager pg_ctl; do
    if [ ! -x "$BIN/$t" ]; then log "missing: $t"; ok=1; fi
  done
  [ -f "$CACHE/crds/.complete" ] || { log "missing: CRDs"; ok=1; }
  return $ok
}

case "${1:-install}" in
  install)
    start=$SECONDS
    command -v go >/dev/null || die "go is not on PATH (Go 1.24 or newer is needed to build the tools)"
    log "cache: $CACHE"
    install_debian
    install_crds
    install_kwok
    install_etcd
    install_kubernetes
    install_pulumi
    install_provider
    check
    log "all tools ready in $((SECONDS - start))s"
    ;;
  install-pulumi)
    install_pulumi
    install_provider
    "$BIN/pulumi" version >&2
    ;;
  bin) echo "$BIN" ;;
  check) check ;;
  *) die "usage: $0 install|install-pulumi|bin|check" ;;
esac
