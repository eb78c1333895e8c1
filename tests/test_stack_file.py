"""The one stack-file reader: names, config values and the rollout state, as every reader sees them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.settings import settings_from_stack_file, stack_file_config
from rollout_policies.errors import UserError
from rollout_policies.gitops import stack_config
from rollout_policies.gitops.kube_live import KubeLiveState
from rollout_policies.stack_file import (
    config_from_text,
    config_name,
    namespaced,
    read_config,
    read_state,
    read_text,
    stack_files,
    stack_name,
    stacks_in,
    state_from_text,
)
from rollout_policies.state import Colour

ROOT = Path(__file__).resolve().parent.parent

STACK = """\
# a comment the reader skips
config:
  kubernetes:context: east
  markethub-rollout:namespace: shop
  markethub-rollout:port: "8080"
  markethub-rollout:gateway: {name: public, namespace: gateway}
  markethub-rollout:rollout:
    stepStartedAt: "2026-11-21T09:00:00Z"
    stageStartedAt: 2026-11-20T09:00:00Z
    weights:
      green: 5
      blue: 95
    candidate:
      version: 5.0.0
      colour: green
    stable:
      version: 4.12.0
      colour: blue
    step: 1
    stage: limited
"""


def _write(folder: Path, stack: str, text: str) -> Path:
    path = folder / config_name(stack)
    path.write_text(text, encoding="utf-8")
    return path


def test_names_round_trip() -> None:
    assert config_name("prod-us-east-1") == "Pulumi.prod-us-east-1.yaml"
    assert stack_name(Path("/x/Pulumi.prod-us-east-1.yaml")) == "prod-us-east-1"


@pytest.mark.parametrize("name", ["Pulumi.yaml", "Pulumi..yaml", "stack.yaml", "Pulumi.prod.json"])
def test_a_file_that_is_not_a_stack_config_is_named(name: str) -> None:
    with pytest.raises(UserError) as caught:
        stack_name(Path(name))
    assert str(caught.value) == f"{name}: not a stack config file (Pulumi.<stack>.yaml)"


def test_stack_files_and_stacks_with_a_rollout_block(tmp_path: Path) -> None:
    _write(tmp_path, "b", STACK)
    _write(tmp_path, "a", "config:\n  aws:region: us-east-1\n")
    (tmp_path / "Pulumi.yaml").write_text("name: project\n", encoding="utf-8")

    assert [p.name for p in stack_files(tmp_path)] == ["Pulumi.a.yaml", "Pulumi.b.yaml"]
    assert stacks_in(tmp_path) == ("b",)


def test_config_values_are_plain_and_namespaced(tmp_path: Path) -> None:
    config = read_config(_write(tmp_path, "s", STACK))

    assert config["kubernetes:context"] == "east"
    gateway = namespaced(config, "markethub-rollout", "s")["gateway"]
    assert gateway == {"name": "public", "namespace": "gateway"}
    assert namespaced(config, "kubernetes", "s") == {"context": "east"}


def test_the_state_is_read_with_both_time_spellings(tmp_path: Path) -> None:
    state = read_state(_write(tmp_path, "s", STACK))

    assert (state.stage, state.step, state.weights) == ("limited", 1, {Colour.BLUE: 95, Colour.GREEN: 5})
    assert state.stage_started_at == datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert state.step_started_at == datetime(2026, 11, 21, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("config: [\n", "s.yaml:2: not valid YAML (expected the node content, but found '<stream end>')"),
        ("config: 3\n", "s.yaml: config: expected a mapping of config keys"),
        (
            "config:\n  aws:region: x\n",
            "s.yaml: config.markethub-rollout:rollout: missing (the stack has no rollout state)",
        ),
        (
            STACK.replace("green: 5", "green: 6"),
            "s.yaml: config.markethub-rollout:rollout: Value error, weights must sum to 100, not 101",
        ),
        (
            STACK.replace("step: 1", "step: -1"),
            "s.yaml: config.markethub-rollout:rollout.step: Input should be greater than or equal to 0",
        ),
    ],
    ids=["bad yaml", "config not a mapping", "no rollout block", "weights", "negative step"],
)
def test_a_bad_stack_file_is_one_line_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        state_from_text(text, "s.yaml")
    assert str(caught.value) == message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        read_config(tmp_path / "Pulumi.gone.yaml")
    assert str(caught.value) == f"{tmp_path / 'Pulumi.gone.yaml'}: no such stack config"


def test_every_reader_uses_the_one_reader(tmp_path: Path) -> None:
    """gitops, infra and the live-state check see the same file the same way."""
    path = _write(tmp_path, "s", STACK)
    broken = _write(tmp_path, "broken", STACK.replace("step: 1", "step: -1"))

    assert stack_config.read_state(path) == read_state(path)
    assert stack_file_config(path)["gateway"] == '{"name": "public", "namespace": "gateway"}'
    assert stack_file_config(path)["port"] == "8080"
    assert KubeLiveState(tmp_path, "markethub-mobile")._settings("s") == {
        "namespace": "shop",
        "service": "markethub-mobile",
        "context": "east",
        "kubeconfig": None,
    }
    with pytest.raises(UserError) as caught:
        read_state(broken)
    assert str(caught.value) == (
        f"{broken}: config.markethub-rollout:rollout.step: Input should be greater than or equal to 0"
    )


def test_the_live_check_reads_an_unreadable_stack_as_unknown(tmp_path: Path) -> None:
    _write(tmp_path, "s", "config: [\n")

    assert KubeLiveState(tmp_path, "markethub-mobile").live_weights("s") is None


def test_the_shipped_stack_files_read_the_same_through_gitops_and_infra() -> None:
    for path in stack_files(ROOT):
        assert settings_from_stack_file(path).rollout == read_state(path)


def test_an_alias_bomb_is_refused_before_anything_walks_it() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(5)
    )
    anchors = "  anchors:\n" + "".join(f"    {line}\n" for line in bomb.splitlines())
    text = "config:\n" + anchors
    used = text + "  markethub-rollout:gateway: *f\n"

    assert state_from_text(STACK + anchors, "s.yaml").stage == "limited"  # defined, never walked
    with pytest.raises(UserError) as caught:
        namespaced(config_from_text(used, "s.yaml"), "markethub-rollout", "s.yaml")
    assert str(caught.value) == (
        "s.yaml: config.markethub-rollout:gateway: more than 10000 values once aliases are expanded"
    )
    with pytest.raises(UserError) as caught:
        state_from_text(text + "  markethub-rollout:rollout:\n    stage: beta\n    extra: *f\n", "s.yaml")
    assert str(caught.value) == (
        "s.yaml: config.markethub-rollout:rollout: more than 10000 values once aliases are expanded"
    )


def test_line_endings_are_read_as_they_are(tmp_path: Path) -> None:
    path = _write(tmp_path, "s", STACK.replace("\n", "\r\n"))

    assert read_text(path).count("\r\n") == STACK.count("\n")
    assert read_state(path).stage == "limited"
