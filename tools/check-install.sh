#!/usr/bin/env bash
# The product installs and runs with its runtime dependencies only: a fresh venv gets the runtime
# lock (hashes checked) and `pip install .` (no dev extra, no rig), then every product module is
# imported and `rollout --help` runs, outside the source tree. A module that imports pytest, moto,
# scipy, devenv or any other package the runtime lock lacks fails here. pip's cache makes a rerun
# cost seconds of download; `make check-install` runs it, and .ci/run before `make test`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
venv="$work/venv"

"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$root/requirements-runtime.lock"
# A copy of the tree (tracked and new files, as they are now), so the build leaves nothing in it.
mkdir -p "$work/src"
git -C "$root" ls-files -z --cached --others --exclude-standard \
  | tar -C "$root" --null --ignore-failed-read -T - -cf - | tar -C "$work/src" -xf -
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$work/src"
"$venv/bin/pip" check

cd "$work"  # not the source tree: import what was installed
"$venv/bin/python" - <<'PY'
import importlib, pkgutil, sys

names = []
for package in ("rollout_policies", "infra", "runbooks"):
    module = importlib.import_module(package)
    assert "site-packages" in (module.__file__ or ""), f"{package} imported from {module.__file__}"
    names.append(package)
    for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
        if info.name.endswith(".__main__"):  # infra/__main__.py runs the Pulumi program
            continue
        importlib.import_module(info.name)
        names.append(info.name)
import rollout_policies
for name in rollout_policies.__all__:
    getattr(rollout_policies, name)
rig = sorted(m for m in sys.modules if m.split(".")[0] in ("devenv", "simulator"))
assert not rig, f"the product imported its rig: {rig}"
print(f"[check-install] imported {len(names)} product modules and {len(rollout_policies.__all__)} public names")
PY
"$venv/bin/rollout" --help > /dev/null
echo "[check-install] rollout --help ran; site-packages: $(du -sh "$venv"/lib/python3*/site-packages | cut -f1)"
