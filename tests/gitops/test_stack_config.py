"""Round-trip edits of the rollout block: comments, order, quoting and layout survive."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from gitops_fixtures import STACK_CONFIG

from rollout_policies.errors import UserError
from rollout_policies.gitops.stack_config import (
    changed_lines,
    read_state,
    render_state,
    stacks_in,
    state_from_text,
    write_state,
)
from rollout_policies.state import Colour


def test_promotion_edit_changes_only_the_moved_values() -> None:
    state = state_from_text(STACK_CONFIG, "Pulumi.prod-us.yaml")
    moved = state.model_copy(
        update={
            "step": 1,
            "weights": {Colour.BLUE: 95, Colour.GREEN: 5},
            "step_started_at": datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        }
    )
    new = render_state(STACK_CONFIG, moved, "Pulumi.prod-us.yaml")
    assert list(changed_lines(STACK_CONFIG, new)) == [
        "-    step: 0                 # index into the stage's traffic steps",
        "+    step: 1                 # index into the stage's traffic steps",
        "-    weights:   {blue: 98, green: 2}",
        "+    weights:   {blue: 95, green: 5}",
        "-    stepStartedAt:  '2026-11-20T09:00:00Z'   # single quotes on purpose",
        "+    stepStartedAt:  '2026-11-21T09:00:00Z'   # single quotes on purpose",
    ]
    assert state_from_text(new, "x") == moved


def test_rollback_adds_one_rolled_back_line_and_a_resume_turns_it_off() -> None:
    state = state_from_text(STACK_CONFIG, "Pulumi.prod-us.yaml")
    rolled = state.model_copy(update={"weights": {Colour.BLUE: 100, Colour.GREEN: 0}, "rolled_back": True})
    text = render_state(STACK_CONFIG, rolled, "Pulumi.prod-us.yaml")
    assert list(changed_lines(STACK_CONFIG, text)) == [
        "+    rolledBack: true",
        "-    weights:   {blue: 98, green: 2}",
        "+    weights:   {blue: 100, green: 0}",
    ]
    resumed = render_state(text, state, "Pulumi.prod-us.yaml")
    assert list(changed_lines(text, resumed)) == [
        "-    rolledBack: true",
        "+    rolledBack: false",
        "-    weights:   {blue: 100, green: 0}",
        "+    weights:   {blue: 98, green: 2}",
    ]
    assert state_from_text(resumed, "x") == state


def test_unchanged_state_gives_byte_identical_text() -> None:
    state = state_from_text(STACK_CONFIG, "x")
    assert render_state(STACK_CONFIG, state, "x") == STACK_CONFIG


def test_version_that_would_read_as_a_number_is_quoted() -> None:
    state = state_from_text(STACK_CONFIG, "x")
    swapped = state.model_copy(update={"stable": state.stable.model_copy(update={"version": "5.1"})})
    new = render_state(STACK_CONFIG, swapped, "x")
    assert '    stable:    {colour: blue,  version: "5.1"}' in new.splitlines()
    assert state_from_text(new, "x").stable.version == "5.1"


def test_write_state_rewrites_the_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.prod-us.yaml"
    path.write_text(STACK_CONFIG)
    state = read_state(path)
    assert write_state(path, state) is False
    rolled = state.model_copy(update={"weights": {Colour.BLUE: 100, Colour.GREEN: 0}})
    assert write_state(path, rolled) is True
    assert read_state(path).weights == {Colour.BLUE: 100, Colour.GREEN: 0}
    assert [p.name for p in tmp_path.iterdir()] == ["Pulumi.prod-us.yaml"]  # no temporary left


def test_missing_block_names_the_file_and_key() -> None:
    with pytest.raises(UserError, match=r"^Pulumi.dev.yaml: config.markethub-rollout:rollout: missing"):
        state_from_text("config:\n  aws:region: us-east-1\n", "Pulumi.dev.yaml")


def test_bad_weights_name_the_field() -> None:
    bad = STACK_CONFIG.replace("{blue: 98, green: 2}", "{blue: 98, green: 3}")
    with pytest.raises(
        UserError, match=r"Pulumi.prod-us.yaml: config.markethub-rollout:rollout: .*sum to 100"
    ):
        state_from_text(bad, "Pulumi.prod-us.yaml")


def test_stacks_in_lists_only_configs_with_a_rollout_block(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.prod-us.yaml").write_text(STACK_CONFIG)
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    (tmp_path / "Pulumi.yaml").write_text("name: x\n")
    assert stacks_in(tmp_path) == ("prod-us",)
