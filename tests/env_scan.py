"""The environment variables the product reads, found in its source with the ``ast`` module.

The one scan both registry checks use: ``rollout_policies/envvars.py`` against the code
(tests/wiring/test_shipped_wiring_units.py) and ``docs/deploy.md`` against the code
(tests/deploy/test_deploy_doc.py).

A name counts as read where the code looks it up: ``os.environ[...]``, ``<something env>.get(...)``,
``os.getenv(...)``, click's ``envvar=...``, the default of an option that names a variable
(``--token-env``), or a call that passes the name beside an environment mapping
(``_number(env, "ROLLOUT_PROVIDER_TIMEOUT", ...)``). Names given as module constants
(``TOKEN_ENV``, ``envvars.GIT_TOKEN``) are resolved. Names that come from the plan file
(``notifications.slack_webhook_env``, a provider's ``options.url_env``) are not in the source:
``plan_named`` lists them from the loaded plan.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

from rollout_policies.plan.model import Plan

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("rollout_policies", "infra", "runbooks", "policy")
NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_ENVISH = re.compile(r"env|variables", re.IGNORECASE)


def _module_constants(tree: ast.Module) -> dict[str, str]:
    constants: dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value.value
    return constants


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, tuple[Path, ast.Module]]:
    """module dotted name -> (its file, its parsed source)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            found[module] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def _resolver(
    tree: ast.Module, module: str, constants: dict[str, dict[str, str]]
) -> Callable[[ast.AST], str | None]:
    own = constants.get(module, {})
    imported: dict[str, str] = {}
    modules: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                local = alias.asname or alias.name
                if alias.name in constants.get(node.module, {}):
                    imported[local] = constants[node.module][alias.name]
                if f"{node.module}.{alias.name}" in constants:
                    modules[local] = f"{node.module}.{alias.name}"

    def resolve(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return own.get(node.id) or imported.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = modules.get(node.value.id)
            return constants.get(target, {}).get(node.attr) if target else None
        return None

    return resolve


def read_in_source(root: Path = ROOT, packages: tuple[str, ...] = PRODUCT) -> dict[str, set[str]]:
    """Every environment variable name the source under ``root/<packages>`` reads -> where
    (``file:line``)."""
    modules = _modules(root, packages)
    constants = {module: _module_constants(tree) for module, (_, tree) in modules.items()}
    reads: dict[str, set[str]] = {}
    for module, (path, tree) in modules.items():
        resolve = _resolver(tree, module, constants)

        def found(
            node: ast.AST, path: Path = path, resolve: Callable[[ast.AST], str | None] = resolve
        ) -> None:
            name = resolve(node)
            if name and NAME.match(name):
                reads.setdefault(name, set()).add(f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}")

        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and _ENVISH.search(ast.unparse(node.value))
            ):
                found(node.slice)
            elif isinstance(node, ast.Call):
                callee = ast.unparse(node.func)
                if callee.endswith(("getenv", ".get")) and _ENVISH.search(callee):
                    for arg in node.args[:1]:
                        found(arg)
                # _number(env, "ROLLOUT_PROVIDER_TIMEOUT", ...): the name right after the mapping
                for before, arg in zip(node.args, node.args[1:], strict=False):
                    if isinstance(before, ast.Name) and _ENVISH.search(before.id):
                        found(arg)
                # click's envvar=, and the default of an option that names a variable (--token-env)
                names_variable = any(
                    isinstance(arg, ast.Constant) and str(arg.value).endswith("-env") for arg in node.args
                )
                for keyword in node.keywords:
                    if keyword.arg == "envvar" or (keyword.arg == "default" and names_variable):
                        found(keyword.value)
    return reads


def plan_named(plan: Plan) -> set[str]:
    """The variables a plan names: its notification targets and its providers' options."""
    names = {plan.notifications.slack_webhook_env, plan.notifications.pagerduty_routing_key_env}
    for metric in plan.metrics:
        for key, value in (metric.source.options or {}).items():
            if key.endswith("_env") and isinstance(value, str):
                names.add(value)
    return {name for name in names if name}
