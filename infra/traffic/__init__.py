"""Traffic: the weighted split between blue and green, behind a router interface (one module per router)."""

from infra.traffic.registry import ROUTERS, router_for
from infra.traffic.router import Router, RouteSpec
from infra.traffic.split import TrafficSplit, TrafficSplitArgs

__all__ = ["ROUTERS", "RouteSpec", "Router", "TrafficSplit", "TrafficSplitArgs", "router_for"]
