"""The router registry: router name -> class. Adding a router is one module and one line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from infra.traffic.gateway_api import GatewayApiRouter
from infra.traffic.router import Router
from rollout_policies.errors import UserError

ROUTERS: Mapping[str, Callable[[], Router]] = MappingProxyType(
    {
        "gateway-api": GatewayApiRouter,
    }
)


def router_for(name: str) -> Router:
    """The router registered as ``name``; an unknown name is a UserError, never a silent default."""
    factory = ROUTERS.get(name)
    if factory is None:
        raise UserError(
            f"markethub-rollout:router: unknown router {name!r} (known: {', '.join(sorted(ROUTERS))})"
        )
    return factory()
