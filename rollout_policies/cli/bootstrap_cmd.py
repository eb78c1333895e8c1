"""`rollout bootstrap ...`: one-off setup in the team's cloud account, written back into the stack configs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from rollout_policies.errors import UserError

FAILOVER_KEY = "markethub-rollout:failover"


@click.group()
def bootstrap() -> None:
    """One-off setup before the first rollout: cloud resources the Pulumi program refers to by id."""


@bootstrap.command("health-checks")
@click.option(
    "--stack", required=True, help="A stack whose failover.probeUrls name every region's probe URL."
)
@click.option("--stacks-dir", default=".", show_default=True, help="Folder of the Pulumi.<stack>.yaml files.")
@click.option(
    "--plan", "plan_path", type=click.Path(dir_okay=False), help="Plan file (default: the stack's)."
)
@click.option("--aws-endpoint-url", envvar="AWS_ENDPOINT_URL", help="AWS endpoint (a moto server locally).")
@click.option("--commit", is_flag=True, help="Commit the changed stack configs in their git repository.")
def health_checks(
    stack: str, stacks_dir: str, plan_path: str | None, aws_endpoint_url: str | None, commit: bool
) -> None:
    """Create a Route 53 health check of each region's probe URL (once: a second run finds them) and
    write their ids as failover.healthChecks into every stack of the same environment."""
    from botocore.exceptions import BotoCoreError, ClientError

    from infra.settings import settings_from_stack_file
    from rollout_policies.cli.drill_cmd import _stack_context, aws_client
    from rollout_policies.gitops.stack_config import render_config_mapping, write_text_atomically
    from rollout_policies.stack_file import read_text
    from runbooks.health_checks import ensure_health_checks

    context = _stack_context(plan_path, stack, stacks_dir)
    assert context.options is not None
    urls = context.options.probe_urls
    dr = context.plan.objectives.disaster_recovery
    missing = [region for region in dr.regions if region not in urls]
    if missing:
        raise UserError(
            f"--stack {stack}: failover.probeUrls has no URL for {', '.join(missing)} in Pulumi.{stack}.yaml"
        )
    folder = Path(stacks_dir)
    environment = settings_from_stack_file(folder / f"Pulumi.{stack}.yaml").environment
    route53 = aws_client("route53", aws_endpoint_url, dr.primary)
    try:
        ids = ensure_health_checks(route53, context.options.service, {r: urls[r] for r in dr.regions})
    except (BotoCoreError, ClientError) as err:
        raise UserError(f"route53: {err}") from err
    for region, check in ids.items():
        click.echo(f"{region}: health check {check} of {urls[region]}")
    changed = []
    for path in sorted(folder.glob("Pulumi.*.yaml")):
        try:
            theirs = settings_from_stack_file(path)
        except UserError:
            continue
        if theirs.environment is not environment or theirs.region not in ids:
            continue
        text = read_text(path)
        new = render_config_mapping(text, FAILOVER_KEY, "healthChecks", ids, str(path))
        if new != text:
            write_text_atomically(path, new)
            changed.append(path)
    for path in changed:
        click.echo(f"wrote failover.healthChecks in {path}")
    if not changed:
        click.echo("stack configs already name these health checks")
    if commit and changed:
        message = "bootstrap: Route 53 health checks of " + ", ".join(
            f"{region} {check}" for region, check in ids.items()
        )
        click.echo(f"committed {_commit(changed, message)[:12]}")


def _commit(paths: list[Path], message: str) -> str:
    folder = paths[0].resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True)
        if done.returncode:
            raise UserError(f"--commit: git {args[0]}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    names = [path.name for path in paths]
    git("add", "--", *names)
    git("commit", "-q", "-m", message, "--", *names)
    return git("rev-parse", "HEAD").strip()
