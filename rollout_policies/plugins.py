"""Extension points: commands and appliers that other installed distributions add by entry point.

The product never imports its development rig. The rig (``rig/``, distribution
``markethub-rollout-devenv``) registers ``rollout env``, ``rollout demo`` and the ``pulumi-local``
applier under these groups; a production install has none of them and works the same.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

COMMANDS_GROUP = "markethub_rollout.commands"
APPLIERS_GROUP = "markethub_rollout.appliers"


def registered(group: str) -> dict[str, EntryPoint]:
    """Entry points of ``group`` by name (reading metadata only: nothing is imported)."""
    return {point.name: point for point in entry_points(group=group)}
