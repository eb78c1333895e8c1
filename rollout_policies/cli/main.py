"""The ``rollout`` command: wiring only. Each command lives in its own module, imported on use."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from rollout_policies.errors import UserError
from rollout_policies.plugins import COMMANDS_GROUP, registered

# command name -> "module:attribute" of its click command. Adding a command is one line here.
# Other installed distributions add commands under plugins.COMMANDS_GROUP (the rig adds `env`).
COMMANDS: dict[str, str] = {
    "plan": "rollout_policies.cli.plan_cmd:plan",
    "evaluate": "rollout_policies.cli.evaluate_cmd:evaluate",
    "promote": "rollout_policies.cli.gitops_cmd:promote",
    "rollback": "rollout_policies.cli.gitops_cmd:rollback",
    "status": "rollout_policies.cli.gitops_cmd:status",
    "drill": "rollout_policies.cli.drill_cmd:drill",
    "deploy": "rollout_policies.cli.deploy_cmd:deploy",
    "serve": "rollout_policies.cli.serve_cmd:serve",
    "watch": "rollout_policies.cli.serve_cmd:watch",
}


class _LazyGroup(click.Group):
    """Imports a command's module only when that command runs, so `rollout --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *registered(COMMANDS_GROUP)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            plugin = registered(COMMANDS_GROUP).get(name)
            return None if plugin is None else plugin.load()
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    main()
