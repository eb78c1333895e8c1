"""The environment variables the product reads, found in its source with the ``ast`` module.

A name counts as read where the code looks it up: ``os.environ[...]``, ``<something env>.get(...)``,
``os.getenv(...)``, click's ``envvar=...``, the default of an option that names a variable
(``--token-env``), or a call that passes the name beside an environment
mapping (``_number(env, "ROLLOUT_PROVIDER_TIMEOUT", ...)``). Names given as module constants
(``TOKEN_ENV``, ``envvars.GIT_TOKEN``) are resolved. Names that come from the plan file
(``notifications.slack_webhook_env``, a provider's ``options.url_env``) are not in the source:
``plan_named`` lists them from the loaded plan.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from rollout_policies.plan.model import Plan

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("rollout_policies", "infra", "runbooks")
NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
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


def _all_constants() -> dict[str, dict[str, str]]:
    """module dotted name -> its module-level string constants."""
    found = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[module] = _module_constants(ast.parse(path.read_text()))
    return found


def _resolver(tree: ast.Module, module: str, constants: dict[str, dict[str, str]]):
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


def read_in_source() -> dict[str, set[str]]:
    """Every environment variable name the product's source reads -> the files that read it."""
    constants = _all_constants()
    reads: dict[str, set[str]] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            tree = ast.parse(path.read_text())
            resolve = _resolver(tree, module, constants)
            where = str(path.relative_to(ROOT))

            def found(node: ast.AST, where: str = where, resolve=resolve) -> None:
                name = resolve(node)
                if name and NAME.match(name):
                    reads.setdefault(name, set()).add(where)

            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.ctx, ast.Load)
                    and _ENVISH.search(ast.unparse(node.value))
                ):
                    found(node.slice)
                elif isinstance(node, ast.Call):
                    callee = ast.unparse(node.func)
                    envish_args = any(
                        isinstance(arg, ast.Name) and _ENVISH.search(arg.id) for arg in node.args
                    )
                    if (callee.endswith(("getenv", ".get")) and _ENVISH.search(callee)) or envish_args:
                        for arg in node.args:
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
