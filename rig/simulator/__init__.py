"""A traffic simulator: blue and green MarketHub-like services, simulated users, a load balancer.

- ``ServiceVersion``: one colour of the service (browse, search, cart, checkout) with Prometheus
  metrics and fault injection through ``POST /admin/faults``.
- ``Users``: simulated shoppers split between the versions by live HTTPRoute weights or a fixed split.
- ``LoadBalancer``: health checks of both versions, exporting unhealthy hosts.
- ``Simulation``: all of it together, on 127.0.0.1 ports, stopped by ``stop()``.
- ``bridge_rules``: Prometheus recording rules that publish the simulator's crash and load-balancer
  figures as the plan's bridged measurements.
"""

from simulator.bridge import bridge_rules, write_bridge_rules
from simulator.service import Faults, ServiceVersion
from simulator.simulation import Simulation
from simulator.traffic import FixedSplit, HTTPRouteWeights, LoadBalancer, Users, WeightSource

__all__ = [
    "Faults",
    "FixedSplit",
    "HTTPRouteWeights",
    "LoadBalancer",
    "ServiceVersion",
    "Simulation",
    "Users",
    "WeightSource",
    "bridge_rules",
    "write_bridge_rules",
]
