"""Round-trip edits of the rollout block in a stack's ``Pulumi.<stack>.yaml``.

Reading is ``rollout_policies.stack_file``'s (re-exported here for the gitops callers). Only the
keys whose values change are rewritten: comments, key order, quoting, flow style, indentation and
line endings (LF or CRLF) survive, so the pull request's diff is the few lines that moved traffic.
A rollout block that uses YAML anchors, aliases or merge keys cannot be edited in place (an edit at
an alias would change its anchor's other users too): it is written out resolved, as plain values.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from rollout_policies.errors import UserError
from rollout_policies.stack_file import (
    bounded,
    config_from_text,
    config_name,
    load_document,
    read_config,
    read_state,
    read_text,
    stacks_in,
    state_from_text,
)
from rollout_policies.state import CONFIG_KEY, RolloutState

__all__ = [
    "changed_lines",
    "config_name",
    "read_state",
    "read_text",
    "render_state",
    "stacks_in",
    "state_from_text",
    "write_state",
    "write_text_atomically",
]


def stack_environment(path: Path) -> str | None:
    """A stack file's ``markethub-rollout:environment`` as written (None when it says nothing)."""
    try:
        value = read_config(path).get("markethub-rollout:environment")
    except UserError:
        return None
    return str(value) if value is not None else None


def _yaml(indent: int | None = None, block_seq_indent: int | None = None) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the user wrote
    if indent is not None:
        yaml.indent(mapping=indent, sequence=indent + (block_seq_indent or 0), offset=block_seq_indent or 0)
    return yaml


def _plain(value: Any) -> Any:
    """ruamel's commented containers and timestamps as plain Python values for comparison (a block
    with aliases is ``bounded`` before it is expanded)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, ScalarString):
        return str(value)
    return value


def _uses_aliases(node: Any, seen: set[int] | None = None) -> bool:
    """Whether a node or anything under it carries an anchor (so it may be aliased) or a merge key."""
    seen = seen if seen is not None else set()
    if id(node) in seen:
        return True  # the same object twice: an alias
    seen.add(id(node))
    anchor = getattr(node, "anchor", None)
    if anchor is not None and getattr(anchor, "value", None):
        return True
    if getattr(node, "merge", None):
        return True
    if isinstance(node, Mapping):
        return any(_uses_aliases(v, seen) for v in node.values())
    if isinstance(node, list):
        return any(_uses_aliases(v, seen) for v in node)
    return False


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _block(document: Any, source: str) -> CommentedMap:
    config = document.get("config") if isinstance(document, Mapping) else None
    block = config.get(CONFIG_KEY) if isinstance(config, Mapping) else None
    if not isinstance(block, CommentedMap):
        raise UserError(f"{source}: config.{CONFIG_KEY}: missing (the stack has no rollout state)")
    return block


def _needs_quotes(text: str) -> bool:
    """Whether a plain scalar would load as something other than this string (5.0, 2026-11-20, yes)."""
    if not text or text != text.strip() or any(c in text for c in ",{}[]#:"):
        return True
    loaded = YAML(typ="safe").load(text)
    return not isinstance(loaded, str) or loaded != text


def _render_scalar(value: Any, style: str) -> str:
    """A value as YAML scalar text in the given quoting style ('"', "'" or '' for plain)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, (str, int, float)):
        raise TypeError(f"cannot write {value!r} as a scalar")
    if not isinstance(value, str):
        return str(value)
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or _needs_quotes(value):
        return json.dumps(value)
    return value


def _token_end(line: str, col: int, in_flow: bool) -> int:
    """Where the scalar token starting at ``col`` ends (exclusive)."""
    quote = line[col]
    if quote == '"':
        i = col + 1
        while i < len(line):
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                return i + 1
            i += 1
        raise ValueError("unterminated double-quoted scalar")
    if quote == "'":
        i = col + 1
        while i < len(line):
            if line[i] == "'":
                if i + 1 < len(line) and line[i + 1] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        raise ValueError("unterminated single-quoted scalar")
    stops = re.compile(r"\s#|[,}\]]" if in_flow else r"\s#")
    match = stops.search(line, col)
    end = match.start() if match else len(line)
    return len(line[:end].rstrip())


@dataclass(frozen=True)
class _Edit:
    line: int
    col: int
    value: Any
    in_flow: bool


def _edits(target: CommentedMap, wanted: Mapping[str, Any], in_flow: bool = False) -> list[_Edit] | None:
    """The scalar edits that turn ``target`` into ``wanted``; None when a key is new or a shape changed."""
    edits: list[_Edit] = []
    for key, value in wanted.items():
        if key not in target:
            return None
        old = target[key]
        if isinstance(value, Mapping):
            if not isinstance(old, CommentedMap):
                return None
            inner = _edits(old, value, in_flow or bool(old.fa.flow_style()))
            if inner is None:
                return None
            edits.extend(inner)
            continue
        if isinstance(old, CommentedMap | list):
            return None
        same = _plain(old) == value or (isinstance(old, datetime | date) and _iso_of(old) == str(value))
        if not same:
            line, col = target.lc.value(key)
            edits.append(_Edit(line, col, value, in_flow))
    return edits


def _iso_of(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


# Keys of the rollout block written only while true (RolloutState.to_config): a rollback, a pause,
# a finalized release.
FLAGS = ("rolledBack", "paused", "released")


def render_state(text: str, state: RolloutState, source: str) -> str:
    """The config text with the rollout block set to ``state``; the same text when nothing differs.

    Each changed value is replaced where it stands, in its own quoting, so nothing else in the file
    moves. Keys the block lacks are added through a ruamel dump (a one-off reformat of the file).
    """
    document = load_document(text, source, _yaml())
    block = _block(document, source)
    wanted = state.to_config()
    for flag in FLAGS:
        if flag in block and flag not in wanted:
            wanted[flag] = False  # a resume: the existing flag is turned off where it stands
    if _uses_aliases(block):
        return _resolved(document, block, wanted, text, state, source)
    lines = text.splitlines(keepends=True)
    added = [flag for flag in FLAGS if flag in wanted and flag not in block]
    if added and not block.fa.flow_style():
        # A rollback or a pause adds one line at the top of the block rather than re-dumping the file.
        first_line, first_col = block.lc.key(next(iter(block)))
        for flag in reversed(added):
            lines.insert(first_line, " " * first_col + f"{flag}: true" + _newline(text))
        text = "".join(lines)
        document = load_document(text, source, _yaml())
        block = _block(document, source)
    edits = _edits(block, wanted)
    if edits is None:
        return _checked(_dumped(document, block, wanted, text), state, source)
    # Right to left within a line, so earlier columns stay valid.
    for edit in sorted(edits, key=lambda e: (e.line, e.col), reverse=True):
        line = lines[edit.line]
        end = _token_end(line, edit.col, edit.in_flow)
        old = line[edit.col : end]
        style = old[0] if old[:1] in ("'", '"') else ""
        if style == "" and isinstance(edit.value, str) and _timestamp_like(old):
            style = '"'  # a time Pulumi must read as text, not a YAML timestamp
        lines[edit.line] = line[: edit.col] + _render_scalar(edit.value, style) + line[end:]
    return _checked("".join(lines), state, source)


def _checked(new: str, state: RolloutState, source: str) -> str:
    """A guard: never write text that says something else than the state asked for."""
    if state_from_text(new, source) != state:
        raise UserError(f"{source}: config.{CONFIG_KEY}: could not rewrite the block in place")
    return new


def _resolved(
    document: Any, block: CommentedMap, wanted: Mapping[str, Any], text: str, state: RolloutState, source: str
) -> str:
    """The file with the rollout block written out as plain values: no anchor, alias or merge key.

    Anchors defined in the block and used elsewhere keep working: the old node stays where the
    other users are, and the dump puts its anchor at the first of them.
    """
    config = document["config"]
    fresh = CommentedMap()
    plain = _plain(bounded(block, f"{source}: config.{CONFIG_KEY}"))
    for key, value in {**wanted, **{k: v for k, v in plain.items() if k not in wanted}}.items():
        fresh[key] = _fresh(value)
    config[CONFIG_KEY] = fresh
    return _checked(_dumped(document, fresh, {}, text), state, source)


def _fresh(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = CommentedMap()
        for key, inner in value.items():
            out[key] = _fresh(inner)
        return out
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, str) and _needs_quotes(value):
        return DoubleQuotedScalarString(value)
    return value


def _timestamp_like(text: str) -> bool:
    return bool(re.match(r"^\d{4}-\d{2}-\d{2}", text))


def _dumped(document: Any, block: CommentedMap, wanted: Mapping[str, Any], text: str) -> str:
    _merge(block, wanted)
    _, indent, block_seq_indent = load_yaml_guess_indent(text)
    out = io.StringIO()
    _yaml(indent or 2, block_seq_indent).dump(document, out)
    dumped = out.getvalue()
    # ruamel writes LF; a CRLF file stays CRLF.
    return dumped.replace("\n", "\r\n") if _newline(text) == "\r\n" else dumped


def _merge(target: CommentedMap, wanted: Mapping[str, Any]) -> None:
    for key, value in wanted.items():
        if key in target and isinstance(target[key], CommentedMap) and isinstance(value, Mapping):
            _merge(target[key], value)
        elif key not in target or _plain(target[key]) != value:
            old = target.get(key)
            if isinstance(value, str) and (isinstance(old, ScalarString) or _needs_quotes(value)):
                value = type(old)(value) if isinstance(old, ScalarString) else DoubleQuotedScalarString(value)
            target[key] = value


def write_text_atomically(path: Path, text: str) -> None:
    """Replace a file in one rename: a crash leaves the old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_state(path: Path, state: RolloutState) -> bool:
    """Write a state into a stack config in place. True when the file changed."""
    text = read_text(path)
    new = render_state(text, state, str(path))
    if new == text:
        return False
    write_text_atomically(path, new)
    return True


def changed_lines(before: str, after: str) -> Iterable[str]:
    """The removed and added lines between two texts (for messages and tests)."""
    import difflib

    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0):
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---")):
            yield line


def render_config_mapping(text: str, key: str, name: str, values: Mapping[str, str], source: str) -> str:
    """The config text with ``config.<key>.<name>`` set to the string map ``values``; the same text
    when it already holds them.

    A line edit, like ``render_state``: the old ``<name>:`` block (if any) goes, the new one is put
    after the section's last value, and nothing else in the file moves (comments, indentation).
    """
    lines = text.splitlines(keepends=True)
    newline = _newline(text)
    header = re.compile(rf"^(\s*){re.escape(key)}:\s*$")
    start = next((i for i, line in enumerate(lines) if header.match(line.rstrip("\r\n"))), None)
    if start is None:
        raise UserError(f"{source}: config.{key}: missing (add the section with its other values first)")
    own = _indent(lines[start])
    body = []  # the section's content lines: (index, indent)
    for index in range(start + 1, len(lines)):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _indent(lines[index]) <= own:
            break
        body.append((index, _indent(lines[index])))
    if not body:
        raise UserError(f"{source}: config.{key}: expected a mapping with values")
    child = body[0][1]
    drop: set[int] = set()
    inside = False
    for index, indent in body:
        if indent == child:
            inside = lines[index].strip().startswith(f"{name}:")
        if inside:
            drop.add(index)
    last = max(index for index, _ in body if index not in drop) if len(drop) < len(body) else start
    block = [" " * child + f"{name}:" + newline] + [
        " " * (child + 2) + f"{k}: {json.dumps(v)}" + newline for k, v in sorted(values.items())
    ]
    new_lines = [line for i, line in enumerate(lines[: last + 1]) if i not in drop]
    new_lines += block + [line for i, line in enumerate(lines[last + 1 :], last + 1) if i not in drop]
    new = "".join(new_lines)
    section = config_from_text(new, source).get(key)
    if not isinstance(section, Mapping) or section.get(name) != dict(values):
        raise UserError(f"{source}: config.{key}.{name}: could not rewrite it in place")
    return text if config_from_text(text, source).get(key) == section else new


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))
