"""The ``rollout`` command: wiring only. Each command lives in its own module, imported on use."""

from __future__ import annotations

import importlib
import sys
from typing import Any, NamedTuple

import click

from rollout_policies.errors import UserError
from rollout_policies.plugins import COMMANDS_GROUP, registered


class Entry(NamedTuple):
    """A command: where its click object lives, and the one line `rollout --help` shows for it."""

    target: str
    summary: str


# command name -> its entry. Adding a command is one line here. The summary is kept here, not read
# from the command, so drawing the help imports no command module (numpy, pydantic, httpx).
# Other installed distributions add commands under plugins.COMMANDS_GROUP (the rig adds `env`).
COMMANDS: dict[str, Entry] = {
    "plan": Entry("rollout_policies.cli.plan_cmd:plan", "Check or print a rollout plan."),
    "evaluate": Entry(
        "rollout_policies.cli.evaluate_cmd:evaluate", "Each gate's verdict and the stage decision."
    ),
    "promote": Entry("rollout_policies.cli.gitops_cmd:promote", "Propose each stack's next step as a PR."),
    "report": Entry("rollout_policies.cli.gitops_cmd:report", "Render a stack's HTML gate report."),
    "rollback": Entry("rollout_policies.cli.gitops_cmd:rollback", "Stable 100% in one commit on main."),
    "abort": Entry("rollout_policies.cli.gitops_cmd:abort", "Roll back and pause until resumed."),
    "release": Entry("rollout_policies.cli.gitops_cmd:release", "Start the next release, or finalize one."),
    "retry": Entry("rollout_policies.cli.gitops_cmd:retry", "Restart a rolled-back stage from step 0."),
    "pause": Entry("rollout_policies.cli.gitops_cmd:pause", "Hold a stack's promotions until resumed."),
    "resume": Entry("rollout_policies.cli.gitops_cmd:resume", "Let a paused stack be promoted again."),
    "status": Entry("rollout_policies.cli.gitops_cmd:status", "Per stack: stage, step, weights, drift."),
    "digest": Entry("rollout_policies.cli.digest_cmd:digest", "Daily stand-up digest, weekly report."),
    "audience": Entry("rollout_policies.cli.audience_cmd:audience", "Select a stage's cohort (beta)."),
    "drill": Entry("rollout_policies.cli.drill_cmd:drill", "Disaster-recovery drills, with reports."),
    "bootstrap": Entry(
        "rollout_policies.cli.bootstrap_cmd:bootstrap", "One-off cloud setup: Route 53 health checks."
    ),
    "deploy": Entry("rollout_policies.cli.deploy_cmd:deploy", "CI's pulumi preview/up of production stacks."),
    "serve": Entry("rollout_policies.cli.serve_cmd:serve", "Roll back on Alertmanager webhooks."),
    "watch": Entry("rollout_policies.cli.serve_cmd:watch", "Roll back by polling Prometheus."),
}


class _LazyGroup(click.Group):
    """Imports a command's module only when that command runs, so `rollout --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *registered(COMMANDS_GROUP)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        plugins = registered(COMMANDS_GROUP)
        rows = [(name, entry.summary) for name, entry in COMMANDS.items()]
        rows += [
            (name, f"(from {point.dist.name if point.dist else point.value})")
            for name, point in plugins.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))

    @staticmethod
    def _load(name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None:
            plugin = registered(COMMANDS_GROUP).get(name)
            return None if plugin is None else plugin.load()
        module_name, attribute = entry.target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="markethub-rollout", prog_name="rollout", message="%(prog)s %(version)s")
def cli() -> None:
    """Run a staged production rollout as code: plans, gates, promotions, rollbacks and drills."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point: a UserError becomes one line on stderr and exit status 2, with no traceback."""
    try:
        return cli.main(args=argv, standalone_mode=False)
    except UserError as err:
        click.echo(f"rollout: error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("rollout: aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2 if err.exit_code == 2 else err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)


if __name__ == "__main__":
    sys.exit(main())
