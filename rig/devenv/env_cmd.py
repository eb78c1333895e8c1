"""`rollout env up|down|status`: the local two-region environment (control planes, Pulumi backend, moto)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from devenv.local import DEFAULT_REGIONS, LocalEnvironment

_state_dir = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for all the environment's state (default: .local/env in the git work tree).",
)


@click.group()
def env() -> None:
    """Start, inspect and stop the local environment: a Kubernetes control plane per region,
    a Pulumi file backend, a bare git remote and a moto server, all on 127.0.0.1."""


@env.command()
@_state_dir
@click.option(
    "--region",
    "regions",
    multiple=True,
    default=DEFAULT_REGIONS,
    show_default=True,
    help="A region to start a control plane for (repeat the flag for several).",
)
@click.option("--nodes", default=3, show_default=True, help="Fake kwok nodes per region.")
@click.option(
    "--database",
    is_flag=True,
    help="Also PostgreSQL archiving WAL to pgBackRest's repository on moto (backups, restore drill).",
)
def up(state_dir: Path | None, regions: tuple[str, ...], nodes: int, database: bool) -> None:
    """Start the environment (does nothing when it already runs) and print how to reach it."""
    environment = LocalEnvironment(state_dir, regions=regions, nodes_per_region=nodes, database=database)
    already = environment.load() is not None and all(row.running for row in environment.status())
    info = environment.up(progress=lambda line: click.echo(line, err=True))
    click.echo(f"environment {'already up' if already else 'up'}: {environment.env_file}")
    for name, region in info.regions.items():
        click.echo(f"  region {name}: {region.server}")
        click.echo(f"    kubeconfig: {region.kubeconfig}")
    click.echo(f"  pulumi backend: {info.pulumi_backend_url} (PULUMI_HOME {info.pulumi_home})")
    click.echo(f"  git remote: {info.git_remote}")
    click.echo(f"  moto (AWS): {info.moto_url}")
    if info.database:
        click.echo(
            f"  database: {info.database['dsn']} (WAL to pgBackRest via {info.database['s3_endpoint']})"
        )
    first = next(iter(info.regions.values()))
    click.echo(f"try: kubectl --kubeconfig {first.kubeconfig} get nodes")
    click.echo(f"(kubectl {tools_hint(info.tools_bin)})")


def tools_hint(tools_bin: str) -> str:
    return f"is in {tools_bin}; `export PATH={tools_bin}:$PATH` to use the pinned version"


@env.command()
@_state_dir
def down(state_dir: Path | None) -> None:
    """Stop every process the environment started and check none is left (state is kept)."""
    environment = LocalEnvironment(state_dir)
    environment.down()
    click.echo(f"environment down: no process left ({environment.state_dir})")


@env.command()
@_state_dir
@click.option("--json", "as_json", is_flag=True, help="Print each component as JSON.")
def status(state_dir: Path | None, as_json: bool) -> None:
    """Show what runs: each region's control plane, moto, the Pulumi backend and the git remote.

    Exits 1 when the environment is only partly running."""
    environment = LocalEnvironment(state_dir)
    rows = environment.status()
    if as_json:
        data = {
            "env_file": str(environment.env_file),
            "up": bool(rows) and all(row.running for row in rows),
            "components": [{"name": r.name, "running": r.running, "detail": r.detail} for r in rows],
        }
        click.echo(json.dumps(data, indent=2))
    elif not rows:
        click.echo(f"environment down ({environment.env_file} does not exist)")
    else:
        from rollout_policies.cli.tables import Table, echo

        state = {True: "running", False: "STOPPED"}
        echo([Table(("state", "component", "detail"), [(state[r.running], r.name, r.detail) for r in rows])])
    if rows and not all(row.running for row in rows):
        # Part of it died (a crash, a reboot): say so to scripts; `rollout env up` restarts it.
        raise click.exceptions.Exit(1)
