"""``pulumi up|preview --stack S ...`` as the workflows call it, run by the real CLI via the Automation API.

The offline CLI build has no Python language host, so a plain ``pulumi up`` cannot start
``infra/__main__.py`` here (README, "Tools, offline"). This shim takes the workflow's command line,
refuses any flag it does not know (so a changed workflow fails loudly), and runs the same operation
on the same project, stack, backend and program with the real ``pulumi`` binary from the tool cache.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pulumi (rehearsal shim)")
    parser.add_argument("operation", choices=["up", "preview"])
    parser.add_argument("--stack", "-s", required=True)
    parser.add_argument("--yes", "-y", action="store_true")
    parser.add_argument("--skip-preview", action="store_true")
    parser.add_argument("--non-interactive", action="store_true")
    parser.add_argument("--policy-pack", action="append", default=[])
    parser.add_argument("--diff", action="store_true")
    options = parser.parse_args(argv)
    from pulumi import automation as auto

    from devenv.tools import tool
    from rollout_policies.gitops.seams import AutomationApplier

    env = dict(os.environ)
    env["ROLLOUT_PULUMI"] = str(tool("pulumi"))  # the real binary, not this shim
    kept = [p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != Path(__file__).parent / "bin"]
    env["PATH"] = os.pathsep.join([str(tool("pulumi").parent), *kept])
    applier = AutomationApplier(Path.cwd(), lambda stack: env)
    stack = applier.stack(options.stack)
    extra = (
        {"policy_packs": [str(Path(p).resolve()) for p in options.policy_pack]} if options.policy_pack else {}
    )
    try:
        if options.operation == "up":
            result = stack.up(color="never", on_output=print, **extra)
            print(f"changes: {dict(result.summary.resource_changes or {})}")
        else:
            stack.preview(color="never", on_output=print, diff=options.diff, **extra)
    except auto.CommandError as err:
        lines = [line for line in str(err).splitlines() if "error" in line.lower()]
        print(
            f"error: pulumi {options.operation} --stack {options.stack}: {(lines or ['failed'])[-1].strip()}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
