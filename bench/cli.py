"""CLI start-up benchmark: `rollout --help` against a bare `python -c pass`, medians over many runs.

Also `import rollout_policies` alone, and with every public name loaded: what an eager public API
would add to each `rollout` start (docs/architecture.md, "The public API").

Run: ``python -m bench.cli [--runs N]`` (``make bench-cli``). Both commands run as fresh processes
from this virtualenv, alternating, so machine load hits both alike; the ratio is the figure to watch.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cli", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each command (default 30)")
    runs = parser.parse_args(argv).runs
    rollout = str(Path(sys.executable).with_name("rollout"))
    commands = {
        "rollout --help": [rollout, "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "import api": [sys.executable, "-c", "import rollout_policies"],
        "every api name": [
            sys.executable,
            "-c",
            "import rollout_policies as r\nfor n in r.__all__: getattr(r, n)",
        ],
    }
    for argv_ in commands.values():  # warm the page cache once
        _time(argv_)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv_ in commands.items():
            samples[name].append(_time(argv_))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"# CLI start-up, {runs} runs each, {platform.python_implementation()} {platform.python_version()}")
    print(f"{'command':<16} {'median':>9} {'p90':>9}")
    for name, values in samples.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"{name:<16} {medians[name] * 1000:>7.0f}ms {p90 * 1000:>7.0f}ms")
    ratio = medians["rollout --help"] / medians["python -c pass"]
    print(f"rollout --help / bare python: {ratio:.1f}x")


if __name__ == "__main__":
    main()
