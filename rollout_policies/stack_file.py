"""The one reader of a stack's ``Pulumi.<stack>.yaml``: its name, its config values, its rollout state.

gitops, the Pulumi program (``infra/``), the live-state check and the runbooks all read stack files
through here, so a file means the same thing to each and a bad one fails with the same line. Only
``gitops.stack_config`` writes them, round-trip, with the document loaded here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from rollout_policies.errors import UserError
from rollout_policies.state import CONFIG_KEY, RolloutState

PREFIX = "Pulumi."
SUFFIX = ".yaml"
# Aliases make a small file stand for a huge tree ("billion laughs"); a stack's values are a few
# dozen, so more than this once aliases are expanded is refused before anything walks the tree.
MAX_NODES = 10_000


def config_name(stack: str) -> str:
    """The file name of a stack's config, relative to the Pulumi project directory."""
    return f"{PREFIX}{stack}{SUFFIX}"


def stack_name(path: Path) -> str:
    """``Pulumi.prod-us-east-1.yaml`` -> ``prod-us-east-1``."""
    name = path.name
    if not (name.startswith(PREFIX) and name.endswith(SUFFIX)) or len(name) <= len(PREFIX + SUFFIX):
        raise UserError(f"{path}: not a stack config file ({config_name('<stack>')})")
    return name[len(PREFIX) : -len(SUFFIX)]


def stack_files(directory: Path) -> tuple[Path, ...]:
    """Every stack config file in a Pulumi project directory, sorted by name."""
    return tuple(
        path for path in sorted(directory.glob(f"{PREFIX}*{SUFFIX}")) if len(path.name) > len(PREFIX + SUFFIX)
    )


def stacks_in(directory: Path) -> tuple[str, ...]:
    """Stacks in a directory whose config holds a rollout block, sorted by name."""
    return tuple(
        stack_name(path) for path in stack_files(directory) if CONFIG_KEY in path.read_text(encoding="utf-8")
    )


def load_document(text: str, source: str, yaml: YAML | None = None) -> Any:
    """A stack file's YAML (plain values unless a round-trip ``yaml`` is given); errors name the line."""
    try:
        return (yaml or YAML(typ="safe", pure=True)).load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise UserError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None


def config_from_text(text: str, source: str) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file's text, every key as written (``namespace:key``)."""
    document = load_document(text, source)
    if document is None:
        return {}
    config = document.get("config") if isinstance(document, Mapping) else None
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise UserError(f"{source}: config: expected a mapping of config keys")
    return {str(key): value for key, value in config.items()}


def bounded(value: Any, where: str) -> Any:
    """``value``, unless aliases expand it past ``MAX_NODES`` values (then a UserError at ``where``).

    Checked where a value is walked (the rollout block, the values handed to the program), not for
    the whole file: an anchor nobody walks costs nothing.
    """
    if _too_many_nodes(value, [MAX_NODES]):
        raise UserError(f"{where}: more than {MAX_NODES} values once aliases are expanded")
    return value


def _too_many_nodes(value: Any, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0:
        return True
    if isinstance(value, Mapping):
        return any(_too_many_nodes(v, budget) for v in value.values())
    if isinstance(value, list):
        return any(_too_many_nodes(v, budget) for v in value)
    return False


def read_text(path: Path) -> str:
    """A stack config's text as it is on disk: no newline translation (CRLF stays CRLF)."""
    with path.open(encoding="utf-8", newline="") as stream:
        return stream.read()


def _read(path: Path) -> str:
    try:
        return read_text(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such stack config") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise UserError(f"{path}: cannot read ({reason})") from None


def read_config(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file; an unreadable or malformed file is a UserError."""
    return config_from_text(_read(path), str(path))


def namespaced(config: Mapping[str, Any], namespace: str, source: str) -> dict[str, Any]:
    """The values of one config namespace, keys without the ``namespace:`` prefix, each ``bounded``."""
    prefix = f"{namespace}:"
    return {
        key[len(prefix) :]: bounded(value, f"{source}: config.{key}")
        for key, value in config.items()
        if key.startswith(prefix)
    }


def state_from_config(config: Mapping[str, Any], source: str) -> RolloutState:
    """The rollout state in a stack's config; ``source`` names the file in errors."""
    block = config.get(CONFIG_KEY)
    if not isinstance(block, Mapping):
        raise UserError(f"{source}: config.{CONFIG_KEY}: missing (the stack has no rollout state)")
    bounded(block, f"{source}: config.{CONFIG_KEY}")
    try:
        return RolloutState.model_validate(block)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        where = f"config.{CONFIG_KEY}" + (f".{field}" if field else "")
        raise UserError(f"{source}: {where}: {first['msg']}") from None


def state_from_text(text: str, source: str) -> RolloutState:
    """The rollout state in a stack config's text; ``source`` names the file in errors."""
    return state_from_config(config_from_text(text, source), source)


def read_state(path: Path) -> RolloutState:
    """The rollout state of one stack file."""
    return state_from_text(_read(path), str(path))
