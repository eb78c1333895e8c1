"""Test rig for the kill -9 and shutdown tests of `rollout`; never part of the product.

Used by tests/gitops/test_crash_recovery.py and tests/alerting/test_serve_shutdown.py.
Put on PYTHONPATH of a `rollout` subprocess, Python imports it at start-up. It does nothing unless
the test sets ``ROLLOUT_TEST_LIVE_DIR``; then it:

- registers a ``recording`` applier: it makes "live" what the working tree says, by writing the
  stack's weights to ``$ROLLOUT_TEST_LIVE_DIR/<stack>.json`` (standing in for ``pulumi up`` of the
  HTTPRoute, which needs a cluster), and passes the ``applying`` point half-way through;
- with ``ROLLOUT_TEST_APPLY_SECONDS``, makes each apply take that long (a slow ``pulumi up``);
- when ``ROLLOUT_TEST_PAUSE_AT`` names a point (``committing``, ``committed``, ``pushed``,
  ``applying``, ``opening-pull``, ``pr_opened``), stops the process there: it writes the point to
  ``$ROLLOUT_TEST_PAUSED`` and sleeps until the test kills it with SIGKILL.

Pausing rather than racing a kill against a running process makes each trial stop at exactly its step.
"""

from __future__ import annotations

import os

if os.environ.get("ROLLOUT_TEST_LIVE_DIR"):
    import json
    import time
    from pathlib import Path

    from rollout_policies.gitops import forge, repo, seams
    from rollout_policies.gitops.stack_config import read_state, write_text_atomically

    LIVE = Path(os.environ["ROLLOUT_TEST_LIVE_DIR"])
    PAUSE_AT = os.environ.get("ROLLOUT_TEST_PAUSE_AT", "")

    def pause(point: str) -> None:
        if point == PAUSE_AT:
            Path(os.environ["ROLLOUT_TEST_PAUSED"]).write_text(point)
            time.sleep(3600)

    class RecordingApplier:
        def __init__(self, project_dir: Path) -> None:
            self.project_dir = project_dir

        def apply_traffic(self, stack: str) -> None:
            weights = read_state(self.project_dir / f"Pulumi.{stack}.yaml").weights
            text = json.dumps({c.value: w for c, w in weights.items()}, sort_keys=True)
            (LIVE / f"{stack}.json.partial").write_text(text)  # a half-done apply leaves this
            pause("applying")
            time.sleep(float(os.environ.get("ROLLOUT_TEST_APPLY_SECONDS", "0")))
            write_text_atomically(LIVE / f"{stack}.json", text)
            (LIVE / f"{stack}.json.partial").unlink()

    seams.APPLIERS["recording"] = RecordingApplier

    original_init = repo.GitRepo.__post_init__

    def paused_init(self: repo.GitRepo) -> None:
        original_init(self)
        self.hook = pause

    repo.GitRepo.__post_init__ = paused_init  # type: ignore[method-assign]

    original_open = forge.GitHubForge.open_pull

    def paused_open(self: forge.GitHubForge, *args: object, **kwargs: object) -> object:
        pause("opening-pull")
        return original_open(self, *args, **kwargs)  # type: ignore[arg-type]

    forge.GitHubForge.open_pull = paused_open  # type: ignore[method-assign, assignment]
