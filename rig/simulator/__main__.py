"""Run the traffic simulator alone: ``python -m simulator [--kubeconfig K] [--duration 10m]``.

Prints one JSON line with the versions' URLs, the crash reporter's URL (for ``ROLLOUT_JSON_BASE_URLS``)
and the Prometheus scrape targets, then serves until
``--duration`` has passed or it gets SIGTERM/Ctrl-C (a bounded run). Faults are set through each
version's ``POST /admin/faults``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading

from rollout_policies.plan.model import parse_duration
from simulator.simulation import Simulation
from simulator.traffic import FixedSplit, HTTPRouteWeights, WeightSource


def _split(parser: argparse.ArgumentParser, text: str) -> FixedSplit:
    blue, _, green = text.partition("/")
    try:
        split = FixedSplit(float(blue), float(green))
    except ValueError:
        parser.error(f"--split {text!r}: write it as BLUE/GREEN, such as 98/2")
    if split.blue < 0 or split.green < 0 or split.blue + split.green != 100:
        parser.error(f"--split {text!r}: two weights that sum to 100, such as 98/2")
    return split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="98/2", help="blue/green weights when no HTTPRoute is read")
    parser.add_argument("--kubeconfig", help="read live weights from the HTTPRoute on this API server")
    parser.add_argument("--namespace", default="markethub", help="the HTTPRoute's namespace")
    parser.add_argument("--route", default="markethub-mobile", help="the HTTPRoute's name")
    parser.add_argument("--sessions", type=float, default=20.0, help="simulated sessions per second")
    parser.add_argument("--duration", default="10m", help="stop after this long")
    parser.add_argument(
        "--cloudwatch-endpoint",
        help="publish the load balancer's metrics to this CloudWatch endpoint (moto's server); AWS_* keys",
    )
    options = parser.parse_args(argv)
    try:
        seconds = parse_duration(options.duration).total_seconds()
    except ValueError as err:
        parser.error(f"--duration: {err}")
    split = _split(parser, options.split)
    weights: WeightSource = split
    if options.kubeconfig:
        weights = HTTPRouteWeights(options.kubeconfig, options.namespace, options.route, fallback=split)
    cloudwatch = None
    if options.cloudwatch_endpoint:
        import boto3

        cloudwatch = boto3.client(
            "cloudwatch",
            endpoint_url=options.cloudwatch_endpoint,
            region_name=os.environ.get("AWS_REGION", "us-east-1"),
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Simulation(weights, sessions_per_second=options.sessions, cloudwatch=cloudwatch) as simulation:
        print(
            json.dumps(
                {
                    "versions": {c: v.url for c, v in simulation.versions.items()},
                    "crash_reporter": simulation.crash_reporter.url,
                    "scrape_targets": simulation.targets,
                }
            ),
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(seconds)
    sys.exit(0)


if __name__ == "__main__":
    main()
