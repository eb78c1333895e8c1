"""The shipped wiring without a cluster: every workflow step and every CronJob the program declares
calls commands and flags the CLI has, and sets only variables something reads.

Everything is read from the shipped files (``.github/workflows/*.yml``, the production stack files
rendered through the Pulumi program under mocks); nothing is typed in again. The end-to-end half,
``test_shipped_wiring.py``, runs the same commands on the local environment.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from env_scan import read_in_source
from shipped import (
    ROOT,
    WORKFLOWS,
    click_path,
    commands_in,
    expressions,
    production_stacks,
    rendered_cronjobs,
    script_reads,
    unknown_flags,
    workflow_steps,
)

from devenv.rehearsal.wiring import run_steps
from rollout_policies import envvars
from rollout_policies.envvars import READ, known
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

PLAN = load_plan(DEFAULT_PLAN)
STEPS = workflow_steps()
RUN_STEPS = [s for s in STEPS if s.run]
CRONJOBS = [job for stack in production_stacks() for job in rendered_cronjobs(stack)]
_SHELL_VAR = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")


def _rollout_calls(step) -> list[list[str]]:
    """``rollout ...`` calls of a step, with ``$VAR`` words replaced by the step's env values (matrix
    expanded), so ``rollout drill "$DRILL"`` is checked as the drill the matrix names."""
    calls = []
    for tokens in commands_in(step.run, "rollout"):
        words = []
        for token in tokens:
            match = _SHELL_VAR.match(token)
            value = step.env.get(match.group(1)) if match else None
            if value is not None:
                value = re.sub(
                    r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: str(step.matrix[m.group(1)]), value
                )
            words.append(value if value is not None and "${{" not in value else token)
        calls.append(words)
    return calls


# ------------------------------------------------------------------ variables


def test_the_registry_names_exactly_the_variables_the_product_reads() -> None:
    """rollout_policies/envvars.py against an AST scan of the product's source, both ways."""
    found = read_in_source()
    assert sorted(set(found) - set(READ)) == [], f"read but not in the registry: {found}"
    assert sorted(set(READ) - set(found)) == [], "in the registry but read nowhere"


def test_the_scan_finds_a_variable_read_by_a_new_line_of_code(tmp_path: Path) -> None:
    """The scan is not a fixed list: a new os.environ.get in the product is found."""
    package = tmp_path / "rollout_policies"
    package.mkdir()
    (package / "x.py").write_text('import os\nURL = os.environ.get("PROMETHEUS_URL")\n')
    assert set(read_in_source(tmp_path, ("rollout_policies",))) == {"PROMETHEUS_URL"}


@pytest.mark.parametrize("step", [s for s in STEPS if s.step_env], ids=lambda s: s.where)
def test_every_variable_a_step_sets_is_read(step) -> None:
    """By the step's script (``$NAME``) or by the product, the tools it drives, or the plan."""
    unread = [
        name
        for name in step.step_env
        if not (step.run and script_reads(step.run, name)) and name not in known(PLAN)
    ]
    assert unread == [], f"{step.where}: sets {unread}, which nothing reads"


def test_every_variable_a_job_sets_is_read() -> None:
    jobs: dict[tuple[str, str], list] = {}
    for step in STEPS:
        jobs.setdefault((step.workflow, step.job), []).append(step)
    problems = []
    for (workflow, job), steps in jobs.items():
        scripts = [s.run for s in steps if s.run]
        for name in steps[0].job_env:
            if name not in known(PLAN) and not any(script_reads(script, name) for script in scripts):
                problems.append(f"{workflow}: job {job}: {name}")
    assert problems == [], f"set, but nothing reads them: {problems}"


def test_every_variable_a_step_exports_is_read() -> None:
    """``echo "NAME=..." >> "$GITHUB_ENV"`` sets NAME for later steps: it too must be read."""
    exported = {
        (step.where, name)
        for step in RUN_STEPS
        for name in re.findall(r'echo\s+"?([A-Z][A-Z0-9_]*)=[^>]*>>\s*"?\$GITHUB_ENV', step.run)
    }
    assert exported, "the workflows export KUBECONFIG for later steps"
    assert sorted(e for e in exported if e[1] not in known(PLAN)) == []


def test_the_promote_workflow_gives_every_variable_the_plans_providers_read() -> None:
    """A provider whose variable is missing errors every gate it serves, and every run holds."""
    env = next(s.env for s in STEPS if s.run and "rollout promote" in s.run)
    providers = {metric.source.provider for metric in PLAN.metrics}
    wanted = {
        "prometheus": "ROLLOUT_PROMETHEUS_URL",
        "sql": "ROLLOUT_SQL_DSN",
        "json_http": "ROLLOUT_JSON_BASE_URLS",
    }
    missing = [
        variable for provider, variable in wanted.items() if provider in providers and variable not in env
    ]
    assert missing == []
    notify = [
        v for v in (PLAN.notifications.slack_webhook_env, PLAN.notifications.pagerduty_routing_key_env) if v
    ]
    assert [v for v in notify if v not in env] == []


# ------------------------------------------------------------------ commands and flags


@pytest.mark.parametrize(
    "step", [s for s in RUN_STEPS if commands_in(s.run, "rollout")], ids=lambda s: s.where
)
def test_every_rollout_call_in_a_workflow_uses_real_commands_and_flags(step) -> None:
    for call in _rollout_calls(step):
        assert unknown_flags(call) == [], f"{step.where}: rollout {' '.join(call)}"


def test_no_workflow_runs_the_pulumi_command_past_the_policy_pack() -> None:
    """Preview and up go through `rollout deploy`, which runs the CLI with the policy pack; a bare
    `pulumi preview|up` in a workflow would skip it (and the local-stack guard)."""
    bare = [
        (s.where, c)
        for s in RUN_STEPS
        for c in commands_in(s.run, "pulumi")
        if c[:1] in (["preview"], ["up"])
    ]
    assert bare == []


@pytest.mark.parametrize("verb", ["preview", "up"])
def test_preview_and_up_enforce_the_policy_pack(verb: str) -> None:
    calls = [c for s in RUN_STEPS for c in _rollout_calls(s) if c[:2] == ["deploy", verb]]
    assert calls, f"no workflow runs rollout deploy {verb}"
    for call in calls:
        pack = call[call.index("--policy-pack") + 1]
        assert (ROOT / pack).exists(), f"--policy-pack {pack}: not in the repository"


def test_promotion_branches_and_pull_requests_are_made_with_the_github_app_token() -> None:
    """GitHub starts no workflow for events made with the workflow's own token: a promotion PR
    opened with it would never get its preview."""
    for step in STEPS:
        if not (step.run and "rollout promote" in step.run):
            continue
        job = [s for s in STEPS if (s.workflow, s.job, s.matrix) == (step.workflow, step.job, step.matrix)]
        apps = {s.id for s in job if s.uses and s.uses.startswith("actions/create-github-app-token@")}
        token = step.env.get("GITHUB_TOKEN", "")
        assert [e for e in expressions(token) if e in {f"steps.{a}.outputs.token" for a in apps}], (
            f"{step.where}: GITHUB_TOKEN is {token!r}, not a GitHub App token"
        )
        checkout = next(s for s in job if s.uses and s.uses.startswith("actions/checkout@"))
        assert checkout.with_.get("token") == token, f"{step.where}: the checkout pushes with another token"


def test_actions_are_pinned_by_full_commit_sha_and_dependabot_keeps_them_current() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.search(r"uses:\s*(\S+)(.*)$", line)
            if match and not match.group(1).startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match.group(1)), f"{path.name}: {line}"
                assert re.search(r"#\s*v\d", match.group(2)), f"{path.name}: say which version: {line}"
    dependabot = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert {"package-ecosystem": "github-actions", "directory": "/"}.items() <= dependabot["updates"][
        0
    ].items()


# ------------------------------------------------------------------ CronJobs


def test_the_program_declares_the_drill_and_database_backup_cronjobs() -> None:
    names = {job.name for job in CRONJOBS}
    assert {"markethub-mobile-drill-backup-restore", "markethub-mobile-drill-region-failover"} <= names
    assert {"markethub-mobile-pgbackrest-full-1d", "markethub-mobile-pgbackrest-incremental-1h"} <= names


@pytest.mark.parametrize("job", CRONJOBS, ids=lambda j: f"{j.stack}:{j.name}")
def test_every_cronjob_command_parses_as_the_cli_would(job) -> None:
    """The container's command line through the real CLI parser, its variables as the pod has them
    (a Secret's value is a placeholder here): an unknown flag or a missing required value fails."""
    argv = job.argv
    assert argv[0] == "rollout", f"{job.name}: runs {argv[0]}, not the rollout command"
    assert unknown_flags(argv[1:]) == []
    command, path, rest = click_path(argv[1:])
    env = {e["name"]: e.get("value", "from-a-secret") for e in job.env}
    context = click.Context(command, auto_envvar_prefix=None)
    for name in env:
        assert name in known(PLAN), f"{job.name}: sets {name}, which nothing reads"
    import os

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        parsed = command.make_context(" ".join(path), list(rest), parent=context)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    # A pod has the installed package and nothing of the repository: no stack files to --stack
    # from, no relative path into a checkout.
    assert parsed.params.get("stack") is None, f"{job.name}: --stack reads a stack file the pod does not have"
    relative = [
        f"--{p.name}" for p in command.params
        if isinstance(p.type, click.Path) and isinstance(parsed.params.get(p.name), str)
        and parsed.params[p.name] and not Path(parsed.params[p.name]).is_absolute()
    ]  # fmt: skip
    assert relative == [], f"{job.name}: {relative} name paths of a checkout the pod does not have"


# ------------------------------------------------------------------ stacks CI may deploy


def test_deploy_refuses_a_local_stack_in_one_line() -> None:
    done = subprocess.run(
        [str(Path(ROOT / ".venv" / "bin" / "rollout")), "deploy", "preview", "--stack", "local-us-east-1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rollout: error: --stack local-us-east-1: environment local; this repository deploys production "
        "stacks (--environment, $ROLLOUT_ENVIRONMENT)"
    ]


def test_the_docs_name_exactly_the_secrets_and_variables_the_workflows_read() -> None:
    used = set()
    for path in WORKFLOWS.glob("*.yml"):
        used |= set(re.findall(r"\$\{\{\s*(?:secrets|vars)\.([A-Z0-9_]+)\s*\}\}", path.read_text()))
    text = (ROOT / "docs" / "gitops.md").read_text()
    table = text[text.index("### Secrets and variables") :].split("\n\n")[2]
    documented = set(
        re.findall(r"`([A-Z][A-Z0-9_]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()[2:]))
    )
    assert documented == used


def test_the_first_push_of_a_branch_deploys_every_production_stack(tmp_path: Path) -> None:
    """GitHub sends `before` as forty zeros on a branch's first push: nothing to diff against."""
    from rollout_policies.cli.deploy_cmd import _changed, _selection

    assert _changed(tmp_path, "0" * 40) == ["Pulumi.yaml"]
    selection = _selection(ROOT, (), "0" * 40, "production")
    assert selection.stacks == tuple(p.name[len("Pulumi.") : -len(".yaml")] for p in production_stacks())


def test_deploy_names_an_unknown_environment_in_one_line() -> None:
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "rollout"), "deploy", "up", "--environment", "staging", "--stack", "x"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rollout: error: --environment 'staging': not an environment (one of production, local)"
    ]


@pytest.mark.parametrize("variable, deploys", [("", "production"), ("local", "local")])
def test_the_workflows_deploy_what_the_repository_variable_names(variable: str, deploys: str) -> None:
    """The deploy step's environment as the workflow writes it, resolved as GitHub does (an unset
    variable is ""): unset deploys production stacks only, ``local`` (the rehearsal's) local ones."""
    from devenv.rehearsal.wiring import Context

    other = {"production": "local-us-east-1", "local": "prod-us-east-1"}[deploys]
    context = Context(variables={"ROLLOUT_ENVIRONMENT": variable})
    for name in ("rollout-preview.yml", "rollout-up.yml"):
        (step,) = [s for s in run_steps(WORKFLOWS / name) if "rollout deploy" in s.run]
        env = {k: context.substitute(v, step.where) for k, v in step.env.items() if k == envvars.ENVIRONMENT}
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "rollout"), "deploy", "preview", "--stack", other],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "ROLLOUT_ENVIRONMENT": "", **env},
        )  # fmt: skip
        assert done.returncode == 2, (name, done.stderr)
        assert f"this repository deploys {deploys} stacks" in done.stderr, (name, done.stderr)


@pytest.mark.parametrize("variable, decides", [("", "production"), ("local", "local")])
def test_the_scheduled_promotion_decides_the_stacks_of_the_named_environment(
    variable: str, decides: str, tmp_path: Path
) -> None:
    """The promote step's environment as the workflow writes it, in a repository holding only the
    *other* environment's stacks: the scheduled run refuses, naming the environment it looked for."""
    from devenv.rehearsal.wiring import Context

    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    for path in repo.glob("Pulumi.*-*.yaml"):
        environment = "local" if path.name.startswith("Pulumi.local-") else "production"
        if environment == decides:
            path.unlink()
    context = Context(variables={"ROLLOUT_ENVIRONMENT": variable})
    (step,) = [s for s in run_steps(WORKFLOWS / "rollout-promote.yml") if "rollout promote" in s.run]
    env = {k: context.substitute(v, step.where) for k, v in step.env.items() if k == envvars.ENVIRONMENT}
    assert env, "the promote step does not pass ROLLOUT_ENVIRONMENT"
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "rollout"), "promote", "--repo", str(repo), "--dry-run"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"rollout: error: --repo {repo}: no {decides} stack (only "), done.stderr
