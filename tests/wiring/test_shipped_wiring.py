"""The shipped workflows and CronJobs, run as shipped against the local environment.

Each workflow job runs step by step from ``.github/workflows/*.yml`` (``actions_runner``), its
secrets and variables mapped to the local environment; each CronJob the Pulumi program declares for
the production stacks runs its container's command, arguments and environment (a Secret's value is
the local one) in an empty folder, as a pod that has the package and no checkout.

Real: the two Kubernetes control planes, the Pulumi CLI and provider with a file backend, the policy
pack, git with a bare remote, Prometheus, PostgreSQL, moto for S3/Route 53/CloudWatch (AWS cannot be
reached). Stand-ins, and why: GitHub Actions itself (``actions_runner``: the marketplace actions
cannot run here), GitHub's REST API (``devenv.forge_standin``), Slack's webhook (a local receiver).

The team repository is a copy of this one whose production stacks point at the local clusters, as a
team's stacks point at theirs: the kubeconfig secret names a context per production stack, the
stacks' ``namespace`` is ``markethub-wiring`` (other tests deploy the local stacks into ``markethub``
on the same clusters) and ``backup.s3Endpoint`` is the moto server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from actions_runner import JobRun, run_job
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from shipped import ROOT, production_stacks, rendered_cronjobs
from slack_receiver import SlackReceiver

from devenv.forge_standin import ForgeStandIn, serve_forge
from devenv.local import LocalEnvironment
from devenv.pytest_fixtures import local_env  # the session's environment
from devenv.services import PostgreSQL, Prometheus
from rollout_policies.envvars import known
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

pytestmark = pytest.mark.e2e
__all__ = ["local_env"]

OWNER, NAME = "markethub", "rollout"
NAMESPACE = "markethub-wiring"
PLAN = load_plan(DEFAULT_PLAN)
STACK = "prod-us-east-1"
# A setting the code needs and the workflow did not give, as the providers say it.
MISSING_SETTING = re.compile(r"no server URL|no database DSN|no base URL named|\(set [A-Z_]+|is not set")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass
class Team:
    """The team's repository (a bare remote standing in for GitHub's), and the values of its
    secrets and variables as the workflows' ``${{ }}`` expressions name them."""

    root: Path
    remote: Path
    values: dict[str, str]
    runner_env: dict[str, str]
    forge: ForgeStandIn
    slack: SlackReceiver
    app_db: str

    def checkout(self, name: str, ref: str = "main") -> Path:
        target = self.root / name
        subprocess.run(["git", "clone", "-q", str(self.remote), str(target)], check=True)
        git(target, "checkout", "-q", ref)
        return target

    def main(self) -> str:
        return git(self.remote, "rev-parse", "main")


def _copy_repository(target: Path) -> None:
    """This repository's files (the working tree, as tracked by git) into ``target``."""
    files = (
        subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _point_production_stacks_here(seed: Path, s3_endpoint: str, primary_bucket: str) -> None:
    """The stacks' S3 is moto behind the environment's TLS front (pgBackRest speaks https only); the
    primary's backup bucket is the one the environment's database archives its WAL to."""
    for path in production_stacks(seed):
        text = path.read_text()
        if "markethub-rollout:region: us-east-1\n" in text:
            text = re.sub(r"(markethub-rollout:backup:\n    bucket: )\S+", rf"\g<1>{primary_bucket}", text)
        text = text.replace(
            "markethub-rollout:namespace: markethub\n", f"markethub-rollout:namespace: {NAMESPACE}\n"
        )
        text = text.replace(
            "  markethub-rollout:backup:\n", f"  markethub-rollout:backup:\n    s3Endpoint: {s3_endpoint}\n"
        )
        path.write_text(text)


def _kubeconfig_data(local_env: LocalEnvironment) -> str:
    """One kubeconfig with a context per production stack, named as its kubernetes:context says."""
    merged: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    for path in production_stacks(ROOT):
        data = yaml.safe_load(path.read_text())["config"]
        context, region = data["kubernetes:context"], data["markethub-rollout:region"]
        source = yaml.safe_load(Path(local_env.info.regions[region].kubeconfig).read_text())
        merged["clusters"].append({"name": context, "cluster": source["clusters"][0]["cluster"]})  # type: ignore[union-attr]
        merged["users"].append({"name": context, "user": source["users"][0]["user"]})  # type: ignore[union-attr]
        merged["contexts"].append({"name": context, "context": {"cluster": context, "user": context}})  # type: ignore[union-attr]
    return base64.b64encode(yaml.safe_dump(merged).encode()).decode()


def _app_database(postgres: PostgreSQL) -> str:
    """The service's database: the plan's verify_tables, which the dump's manifest fingerprints."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "wiring_app" WITH (FORCE)')
        conn.execute('CREATE DATABASE "wiring_app"')
    dsn = postgres.dsn_for("wiring_app")
    with psycopg.connect(dsn) as conn:
        for table in PLAN.objectives.disaster_recovery.verify_tables:
            conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, payload text)')
            conn.execute(f'INSERT INTO "{table}" SELECT g, md5(g::text) FROM generate_series(1, 200) g')
    return dsn


def _ensure_namespace(kubeconfig: str, name: str) -> None:
    with config.new_client_from_config(config_file=kubeconfig) as api:
        try:
            client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata={"name": name}))
        except ApiException as err:
            if err.status != 409:
                raise


@pytest.fixture(scope="module")
def team(
    local_env: LocalEnvironment,
    prometheus_factory,
    postgres: PostgreSQL,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Team]:
    root = tmp_path_factory.mktemp("team")
    remote = root / "github" / OWNER / f"{NAME}.git"
    remote.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    seed = root / "seed"
    subprocess.run(["git", "clone", "-q", str(remote), str(seed)], check=True, capture_output=True)
    _copy_repository(seed)
    moto_url = local_env.info.moto_url
    database = local_env.info.database
    _point_production_stacks_here(
        seed, database["s3_endpoint"], database["pgbackrest"]["PGBACKREST_REPO1_S3_BUCKET"]
    )
    git(seed, "add", "-A")
    git(
        seed,
        "-c",
        "user.name=team",
        "-c",
        "user.email=team@example.invalid",
        "commit",
        "-q",
        "-m",
        "the rollout repository",
    )
    git(seed, "push", "-q", "origin", "main")

    # What the team's cloud has before the first deploy: the backup bucket, Velero's namespace.
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    for path in production_stacks(seed):
        bucket = yaml.safe_load(path.read_text())["config"]["markethub-rollout:backup"]["bucket"]
        region = yaml.safe_load(path.read_text())["config"]["markethub-rollout:region"]
        kwargs = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):  # the database's, made by env up
            s3.create_bucket(Bucket=bucket, **kwargs)
    for info in local_env.info.regions.values():
        _ensure_namespace(info.kubeconfig, "velero")

    prometheus: Prometheus = prometheus_factory()
    slack = SlackReceiver()
    app_token, workflow_token = "ghs_app_" + os.urandom(12).hex(), "ghs_workflow_" + os.urandom(12).hex()
    json_bases = sorted({str(m.source.options["base"]) for m in PLAN.metrics if "base" in m.source.options})
    with serve_forge(token=(app_token, workflow_token)) as (forge_url, forge):
        values = {
            "app token": app_token,
            "github.token": workflow_token,
            "github.server_url": f"file://{root / 'github'}",
            "github.repository": f"{OWNER}/{NAME}",
            "github.run_id": "1",
            "inputs.stack": "",
            "inputs.dry_run": "",
            "vars.ROLLOUT_APP_ID": "12345",
            "secrets.ROLLOUT_APP_PRIVATE_KEY": "a private key (the App token stand-in does not sign)",
            "secrets.PULUMI_BACKEND_URL": local_env.info.pulumi_backend_url,
            "secrets.PULUMI_CONFIG_PASSPHRASE": local_env.info.pulumi_passphrase,
            "secrets.AWS_ACCESS_KEY_ID": "testing",
            "secrets.AWS_SECRET_ACCESS_KEY": "testing",
            "secrets.KUBECONFIG_DATA": _kubeconfig_data(local_env),
            "secrets.SLACK_WEBHOOK_URL": slack.url,
            "secrets.PAGERDUTY_ROUTING_KEY": "",
            "secrets.ROLLOUT_SQL_DSN": postgres.dsn,
            # The environment's database archives WAL to pgBackRest: the restore drill's source.
            "secrets.DRILL_SOURCE_DSN": local_env.info.database["dsn"],
            "vars.ROLLOUT_PROMETHEUS_URL": prometheus.url,
            "vars.ROLLOUT_CLOUDWATCH_REGION": "us-east-1",
            "vars.ROLLOUT_CLOUDWATCH_ENDPOINT_URL": moto_url,
            # Nothing listens on port 9 (discard): configured, unreachable, as a service that is down.
            "vars.ROLLOUT_JSON_BASE_URLS": ",".join(f"{b}=http://127.0.0.1:9" for b in json_bases),
            # Not set in a production repository: GitHub gives "" (docs/deploy.md).
            "vars.ROLLOUT_ENVIRONMENT": "",
        }
        venv_bin = str(Path(sys.executable).parent)
        runner_env = {
            # A GitHub-hosted runner's own variables; nothing the product reads is set here.
            "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": os.environ["HOME"],  # the runner's tool cache (the pinned Pulumi CLI) is warm
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": f"{OWNER}/{NAME}",
            "GITHUB_API_URL": forge_url,
            "GITHUB_SERVER_URL": values["github.server_url"],
            "GITHUB_ACTOR": "markethub-rollout[bot]",
        }
        team = Team(root, remote, values, runner_env, forge, slack, _app_database(postgres))
        try:
            yield team
        finally:
            slack.close()


def _assert_no_unknown_flag(run: JobRun) -> None:
    for step in run.steps:
        assert "No such option" not in step.output, f"{step.step.where}: {step.output[-2000:]}"
        assert "No such command" not in step.output, f"{step.step.where}: {step.output[-2000:]}"


def test_scheduled_promote_runs_and_a_repeated_hold_is_posted_once(team: Team) -> None:
    first = run_job("rollout-promote.yml", "promote", workspace=team.checkout("promote-1"),
                    values=team.values, runner_env=team.runner_env)  # fmt: skip
    _assert_no_unknown_flag(first)
    promote = first.step("rollout promote")
    assert promote.returncode in (0, 3), first.report()
    # Every provider the plan uses was configured by the workflow, by the names the code reads.
    assert MISSING_SETTING.findall(promote.output) == [], promote.output[-3000:]
    production = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in production_stacks(ROOT)]
    decided = {
        m.group(2)
        for m in re.finditer(r"^([a-z-]+): ([\w.-]+): ", promote.stdout, re.M)
        if m.group(1) != "skipped"
    }
    # The real stacks are decided; the local environment's are not the scheduled run's business.
    assert decided == set(production), promote.stdout
    posted = len(team.slack.texts())
    assert posted == len(production), team.slack.texts()

    second = run_job("rollout-promote.yml", "promote", workspace=team.checkout("promote-2"),
                     values=team.values, runner_env=team.runner_env)  # fmt: skip
    assert second.step("rollout promote").returncode == promote.returncode, second.report()
    # A fresh process, a fresh clone: what was posted is known from git, and nothing is posted again.
    assert len(team.slack.texts()) == posted, team.slack.texts()
    assert "not posted" in second.step("rollout promote").stdout


def test_promote_without_its_token_stops_before_deciding(team: Team) -> None:
    """The token fault: with no GITHUB_TOKEN the run would push branches and open no pull request."""
    values = {**team.values, "app token": ""}
    run = run_job("rollout-promote.yml", "promote", workspace=team.checkout("promote-no-token"),
                  values=values, runner_env=team.runner_env)  # fmt: skip
    step = run.step("rollout promote")
    assert step.returncode == 2
    assert "GITHUB_TOKEN: not set" in step.stderr


def _open_pull(team: Team, branch: str) -> int:
    response = httpx.post(
        f"{team.runner_env['GITHUB_API_URL']}/repos/{OWNER}/{NAME}/pulls",
        headers={"Authorization": f"Bearer {team.values['app token']}", "User-Agent": "test"},
        json={"title": "rollout(prod-us-east-1): a config change", "head": branch, "base": "main"},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["number"])


def test_preview_on_the_pull_request_then_up_on_merge(team: Team, local_env: LocalEnvironment) -> None:
    base = team.main()
    work = team.checkout("change")
    stack_file = work / f"Pulumi.{STACK}.yaml"
    stack_file.write_text(
        stack_file.read_text().replace(
            'markethub-rollout:maxReplicas: "30"', 'markethub-rollout:maxReplicas: "32"'
        )
    )
    git(
        work,
        "-c",
        "user.name=dev",
        "-c",
        "user.email=dev@example.invalid",
        "commit",
        "-qam",
        "raise maxReplicas",
    )
    git(work, "push", "-q", "origin", "HEAD:refs/heads/raise-max")
    number = _open_pull(team, "raise-max")

    values = {
        **team.values,
        "github.event.pull_request.base.sha": base,
        "github.event.pull_request.number": str(number),
    }
    checkout = team.checkout("preview", "origin/raise-max")
    preview = run_job(
        "rollout-preview.yml", "preview", workspace=checkout, values=values, runner_env=team.runner_env
    )
    _assert_no_unknown_flag(preview)
    assert preview.ok, preview.report()
    comments = team.forge.pull("raise-max").comments  # type: ignore[union-attr]
    assert len(comments) == 1 and f"`{STACK}`: preview ok" in comments[0], comments
    assert "local-" not in preview.step("rollout deploy preview").stdout

    git(work, "push", "-q", "origin", "HEAD:main")
    values = {**team.values, "github.event.before": base}
    up = run_job(
        "rollout-up.yml", "up", workspace=team.checkout("up"), values=values, runner_env=team.runner_env
    )
    _assert_no_unknown_flag(up)
    assert up.ok, up.report()
    status = json.loads(up.step("rollout status").stdout)
    assert {row["stack"] for row in status} >= {STACK}
    with config.new_client_from_config(config_file=str(local_env.info.kubeconfig("us-east-1"))) as api:
        route = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", "markethub-mobile"
        )
    assert route["metadata"]["name"] == "markethub-mobile"
    assert "up succeeded" in up.step("rollout deploy up").stdout


def test_every_cronjob_runs_its_command_as_declared(
    team: Team, local_env: LocalEnvironment, tmp_path: Path
) -> None:
    """The backups first (full, then incremental: the restore drill needs a chain), then the drills,
    each in an empty folder. The local stack cannot hold the environment's ports, so the backup jobs
    and the restore drill get the environment's pgBackRest settings (repository endpoint, and for
    the backups where the database's files are) on top of the rendered ones, as a node would."""
    database = local_env.info.database
    secrets = {("markethub-db", "url"): database["dsn"]}
    notify = {PLAN.notifications.slack_webhook_env: team.slack.url}
    stack_file = team.checkout("cronjobs") / f"Pulumi.{STACK}.yaml"
    order = ("pgbackrest-full", "pgbackrest-incremental", "drill-")
    jobs = sorted(rendered_cronjobs(stack_file), key=lambda j: [k in j.name for k in order].index(True))
    assert [j.name.split("markethub-mobile-", 1)[1] for j in jobs][:2] == [
        "pgbackrest-full-1d",
        "pgbackrest-incremental-1h",
    ] and len(jobs) == 4
    with psycopg.connect(database["dsn"]) as conn:
        for table in PLAN.objectives.disaster_recovery.verify_tables:
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (id int PRIMARY KEY, payload text)')
    before = len(team.slack.texts())
    started = __import__("time").time()
    for job in jobs:
        env = {"PATH": team.runner_env["PATH"], "HOME": str(tmp_path)}
        for item in job.env:
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = secrets[(ref["name"], ref["key"])]
        if "pgbackrest" in job.name or job.name.endswith("backup-restore"):
            # moto's keys instead of the pod's web identity; for the backups, where the files are.
            here: tuple[str, ...] = ("PGBACKREST_REPO1_S3_KEY", "PGBACKREST_LOCK_PATH")
            if "pgbackrest" in job.name:
                here += ("PGBACKREST_PG1_",)
            env.update({k: v for k, v in database["pgbackrest"].items() if k.startswith(here)})
            env["PGBACKREST_REPO1_S3_KEY_TYPE"] = "shared"
        for source in job.container.get("envFrom", []):
            assert source["secretRef"]["name"] == "markethub-rollout-notify"
            env.update(notify)
        assert set(env) - {"PATH", "HOME"} <= known(PLAN), f"{job.name}: sets a variable nothing reads"
        pod = tmp_path / job.name
        pod.mkdir()
        done = subprocess.run(job.argv, cwd=pod, env=env, capture_output=True, text=True, timeout=600)
        output = done.stdout + done.stderr
        assert "No such option" not in output and done.returncode != 2, f"{job.name}: {output[-3000:]}"
        if "pgbackrest" in job.name:
            assert done.returncode == 0, output[-3000:]
        else:
            # A drill's verdict may be a finding here (no second region deployed, no Velero server);
            # what is checked is that it ran to a report through its shipped wiring.
            assert re.search(r": (passed|failed|inconclusive); report ", output), output[-3000:]
    drills = [t for t in team.slack.texts()[before:] if "*DRILL*" in t]
    assert len(drills) == 2, team.slack.texts()
    for job in jobs:  # the pods' /tmp/drills, which here is this machine's
        for report in Path("/tmp/drills").glob(f"{job.name.rsplit('drill-', 1)[-1]}/*"):
            if report.stat().st_mtime >= started:
                report.unlink()


@pytest.mark.parametrize("drill", ["backup-restore", "region-failover"])
def test_scheduled_drills_run_and_commit_their_reports(team: Team, drill: str) -> None:
    before = team.main()
    run = run_job("rollout-drills.yml", "drill", workspace=team.checkout(f"drill-{drill}"),
                  values=team.values, runner_env=team.runner_env, matrix={"drill": drill})  # fmt: skip
    _assert_no_unknown_flag(run)
    step = run.step("rollout drill")
    assert step.returncode != 2, run.report()
    assert re.search(rf"{drill}: (passed|failed|inconclusive); report ", step.stdout), run.report()
    # The report is on main, under reports/drills/<drill>/, in a commit of its own.
    pushed = git(team.remote, "diff", "--name-only", before, "main").splitlines()
    assert pushed and all(p.startswith(f"reports/drills/{drill}/") for p in pushed), pushed
    assert {Path(p).suffix for p in pushed} == {".json", ".md", ".html"}
    assert run.uploaded and run.uploaded[0].is_dir()
