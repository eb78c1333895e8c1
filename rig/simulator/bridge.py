"""Recording rules that publish the simulator's crash rate and load-balancer failures as bridged measurements.

The plan reads crash rate from a crash reporter and load-balancer failures from CloudWatch, so its
alert rules watch the bridge gauge ``markethub_rollout_measurement{metric, service}`` for them (see
``infra/alerts.py``). In production an exporter publishes that gauge; here these rules compute it
from the simulator's own counters, so the plan's rules stay exactly as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulator.service import SERVICE

BRIDGE_METRIC = "markethub_rollout_measurement"


def bridge_rules(service: str = SERVICE, *, interval: str = "1s", rate_window: str = "1m") -> dict[str, Any]:
    crash = (
        f'100 * sum(rate(markethub_crashes_total{{track="candidate"}}[{rate_window}]))'
        f' / sum(rate(markethub_sessions_total{{track="candidate"}}[{rate_window}]))'
    )
    unhealthy = 'max(markethub_lb_unhealthy_hosts{track="candidate"})'
    return {
        "groups": [
            {
                "name": "simulator-bridge",
                "interval": interval,
                "rules": [
                    {
                        "record": BRIDGE_METRIC,
                        "expr": crash,
                        "labels": {"metric": "crash_rate", "service": service},
                    },
                    {
                        "record": BRIDGE_METRIC,
                        "expr": unhealthy,
                        "labels": {"metric": "lb_unhealthy_hosts", "service": service},
                    },
                ],
            }
        ]
    }


def write_bridge_rules(path: Path, service: str = SERVICE, **options: Any) -> Path:
    path.write_text(json.dumps(bridge_rules(service, **options), indent=1) + "\n")
    return path
