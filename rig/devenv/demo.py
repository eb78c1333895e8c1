"""`make demo`: a short dress rehearsal (the shipped plan, one fault, about five minutes), and its report.

    rollout env up                               # once (make demo does it)
    python -m devenv.demo [--state-dir DIR] [--keep]

The demo is the rehearsal (``rollout rehearse``, docs/rehearsal.md) at a faster calendar scale with a
single fault: an API error burst in beta that the controller rolls back, after which the rollout
resumes and carries on to 100% in both regions. It prints every step as it happens and, at the end,
the verdict and the path of ``report.html``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from devenv.local import LocalEnvironment
from rollout_policies.errors import UserError

DEMO_SCALE = 30240.0  # three calendar weeks per wall minute: the ten weeks in about three and a half minutes
DEMO_FAULTS = "beta+5%:api-errors"


def demo_arguments(state_dir: str | None, report_dir: Path) -> list[str]:
    """The `rollout rehearse` arguments the demo runs with."""
    arguments = ["--scale", f"{DEMO_SCALE:g}", "--faults", DEMO_FAULTS, "--report", str(report_dir)]
    return arguments + (["--state-dir", state_dir] if state_dir else [])


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Check the environment runs, then run the short rehearsal; exit 2 with one line on failure."""
    parser = argparse.ArgumentParser(prog="python -m devenv.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", help="the environment's folder (default: .local/env of the work tree)")
    parser.add_argument(
        "--keep", action="store_true", help="leave the deployments and the rollout repository"
    )
    args = parser.parse_args(argv)
    try:
        environment = LocalEnvironment(args.state_dir)
        info = environment.load()
        if info is None or not all(c.running for c in environment.status(info)):
            raise UserError(
                f"the local environment in {environment.state_dir} is not running "
                f"(run `rollout env up{' --state-dir ' + args.state_dir if args.state_dir else ''}` first)"
            )
    except UserError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2
    from devenv.rehearsal.cmd import rehearse

    report_dir = Path(environment.state_dir).parent / "demo-report"
    arguments = demo_arguments(args.state_dir, report_dir) + (["--keep"] if args.keep else [])
    try:
        rehearse.main(arguments, prog_name="rollout rehearse", standalone_mode=False)
    except SystemExit as done:
        return int(done.code or 0)
    except UserError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
