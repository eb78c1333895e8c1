"""The controller's image (Dockerfile) agrees with the Deployment the Pulumi program declares.

No Docker engine runs on these machines, so the image is never built here. Instead the recipe is
read: its stages, user, PATH and entrypoint are checked against the rendered Deployment, every flag
the Deployment passes is parsed by the real CLI, and the package stage's own RUN script is run in a
virtualenv (marked ``image``: it installs the package's dependencies from PyPI or pip's cache).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from devenv.dockerfile import parse
from devenv.pod import expand
from infra.controller import deployment_manifest
from infra.program import controller_args, load_plan_file, resolve_plan_path
from infra.settings import settings_from_stack_file
from rollout_policies.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = parse(ROOT / "Dockerfile")
STACKS = sorted(ROOT.glob("Pulumi.prod-*.yaml"))


def _deployment(stack_file: Path, **controller: object) -> dict:
    settings = settings_from_stack_file(stack_file)
    if controller:
        settings = settings.model_copy(
            update={"controller": settings.controller.model_copy(update=controller)}
        )
    plan = load_plan_file(resolve_plan_path(settings.plan))
    return deployment_manifest(controller_args(settings, plan, settings.service_name or plan.service))


def _containers(stack_file: Path) -> list[dict]:
    watching = _deployment(stack_file, watch=True, prometheus_url="http://prometheus.monitoring.svc:9090")
    return watching["spec"]["template"]["spec"]["containers"]


def test_every_stage_builds_on_python_3_11_slim():
    assert len(DOCKERFILE.stages) >= 2
    assert {stage.base.split(":")[0] for stage in DOCKERFILE.stages} == {"python"}
    assert all(stage.base.split(":")[1].startswith("3.11-slim") for stage in DOCKERFILE.stages)


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_the_image_runs_as_the_non_root_user_the_deployment_requires(stack_file):
    user = DOCKERFILE.final.last("USER")
    assert user is not None
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    created = " ".join(DOCKERFILE.final.all("RUN"))
    assert f"useradd --uid {uid} --gid {gid}" in created
    pod = _deployment(stack_file)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)


def test_the_image_has_git():
    installs = [run for run in DOCKERFILE.final.all("RUN") if "apt-get install" in run]
    assert any("git" in shlex.split(run) for run in installs)


def _venv() -> str:
    stage = DOCKERFILE.stage("package")
    return next(value.split("=", 1)[1] for value in stage.all("ARG") if value.startswith("VENV="))


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_the_deployments_command_is_the_console_script_on_the_images_path(stack_file):
    venv = _venv()
    path = DOCKERFILE.final.env()["PATH"].split(":")
    assert f"{venv}/bin" in path
    assert f"--from=package {venv} {venv}" in DOCKERFILE.final.all("COPY")
    pyproject = (ROOT / "pyproject.toml").read_text()
    for container in _containers(stack_file):
        assert container["command"] == ["rollout"]
        assert re.search(
            rf'^{container["command"][0]} = "rollout_policies\.cli\.main:main"$', pyproject, re.M
        )
    # A container that sets `command` replaces the image's ENTRYPOINT; the two name the same program.
    assert DOCKERFILE.final.exec_form("ENTRYPOINT") == ["rollout"]


def _options(command: list[str]) -> set[str]:
    """Every --flag the real CLI's help lists for a subcommand."""
    done = subprocess.run(
        [sys.executable, "-P", "-m", "rollout_policies.cli.main", *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", done.stdout))


def _resolved_args(container: dict) -> list[str]:
    # Only the pod's address is filled in by Kubernetes; everything else is literal.
    declared = {e["name"]: "10.0.0.7" for e in container["env"] if "fieldRef" in e.get("valueFrom", {})}
    return [expand(arg, declared) for arg in container["args"]]


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: p.name)
def test_every_flag_the_deployment_passes_is_an_option_of_the_real_command(stack_file):
    for container in _containers(stack_file):
        args = _resolved_args(container)
        subcommand = args[0]
        flags = {arg.split("=", 1)[0] for arg in args[1:] if arg.startswith("--")}
        assert flags and flags <= _options([subcommand]), flags - _options([subcommand])
        # And the whole line parses, values included (choices, durations stay for run time).
        command = cli.get_command(click.Context(cli), subcommand)
        assert command is not None
        context = command.make_context(subcommand, list(args[1:]))
        assert context.params["stacks"] == (settings_from_stack_file(stack_file).stack,)


def test_a_flag_the_cli_does_not_have_is_caught():
    assert "--no-such-flag" not in _options(["serve"])
    assert "--listen" in _options(["serve"])


def test_pulumi_and_its_provider_come_from_tools_versions_env():
    stage = DOCKERFILE.stage("pulumi")
    assert "tools/versions.env /tmp/versions.env" in stage.all("COPY")
    script = " ".join(stage.all("RUN"))
    assert ". /tmp/versions.env" in script
    assert "https://get.pulumi.com/releases/sdk/pulumi-v${PULUMI_VERSION}-linux-" in script
    assert "pulumi-resource-kubernetes-v${PULUMI_KUBERNETES_VERSION}-linux-" in script
    # No version typed into the recipe: every pin is in tools/versions.env.
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"\b\d+\.\d+\.\d+\b", text)
    path = DOCKERFILE.final.env()["PATH"].split(":")
    assert "/opt/pulumi" in path and "--from=pulumi /opt/pulumi /opt/pulumi" in DOCKERFILE.final.all("COPY")
    assert DOCKERFILE.final.env()["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"


def _copied_sources() -> list[str]:
    sources = []
    for stage in DOCKERFILE.stages:
        for value in stage.all("COPY"):
            parts = value.split()
            if parts[0].startswith("--from="):
                continue
            sources += [p for p in parts[:-1] if not p.startswith("--")]
    return sources


def test_what_the_recipe_copies_exists_and_the_dockerignore_lets_it_through():
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for source in _copied_sources():
        if "*" in source:
            continue  # optional files (requirements.lock*)
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"


@pytest.mark.image
def test_the_package_stage_installs_the_package_and_its_console_script(tmp_path):
    """The package stage's COPY and RUN steps, run here with the virtualenv under tmp_path."""
    stage = DOCKERFILE.stage("package")
    src = tmp_path / "src"
    src.mkdir()
    for value in stage.all("COPY"):
        *sources, target = value.split()
        destination = src / target if target not in ("./", ".") else src
        for source in sources:
            for found in ROOT.glob(source):
                if found.is_dir():
                    shutil.copytree(found, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(found, destination / found.name if target.endswith("/") else destination)
    (script,) = stage.all("RUN")
    venv = tmp_path / "opt-rollout"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "VENV": str(venv),
        # The recipe's ENV, but pip's cache stays on: the image has no use for it, a test run does.
        **{k: v for k, v in stage.env().items() if k != "PIP_NO_CACHE_DIR"},
    }
    done = subprocess.run(
        ["sh", "-ec", script], cwd=src, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    help_text = subprocess.run(
        [str(venv / "bin" / "rollout"), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    args = _resolved_args(_containers(STACKS[0])[0])
    assert {a for a in args if a.startswith("--")} <= set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
    # The applier's program and the shipped plan are in the installed package, not only in the sources.
    check = "import infra.program, rollout_policies.plan.loader as l; assert l.DEFAULT_PLAN.exists()"
    subprocess.run([str(venv / "bin" / "python"), "-c", check], cwd=tmp_path, check=True)
