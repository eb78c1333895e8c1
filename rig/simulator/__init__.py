"""A traffic simulator: blue and green MarketHub-like services, simulated users, a load balancer.

- ``ServiceVersion``: one colour of the service (browse, search, cart, checkout) with Prometheus
  metrics and fault injection through ``POST /admin/faults``.
- ``Users``: simulated shoppers split between the versions by live HTTPRoute weights or a fixed split.
- ``LoadBalancer``: health checks of both versions, published to CloudWatch (moto in tests).
- ``CrashReporter``: the app's crash reporter and its stability API (the plan's crash-rate source).
- ``Simulation``: all of it together, on 127.0.0.1 ports, stopped by ``stop()``.

It publishes only what the real service and its cloud publish: the versions' /metrics, the crash
reporter's API, the load balancer's CloudWatch metrics. Nothing here feeds a rule directly.
"""

from simulator.crash_reporter import CrashReporter
from simulator.service import Faults, ServiceVersion
from simulator.simulation import Simulation
from simulator.traffic import FixedSplit, HTTPRouteWeights, LoadBalancer, Users, WeightSource

__all__ = [
    "CrashReporter",
    "Faults",
    "FixedSplit",
    "HTTPRouteWeights",
    "LoadBalancer",
    "ServiceVersion",
    "Simulation",
    "Users",
    "WeightSource",
]
