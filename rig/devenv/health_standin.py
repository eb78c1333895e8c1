"""A local HTTP endpoint standing in for one region's service, for drills on the local environment.

The local clusters run kwok's fake nodes, so no pod really serves HTTP; this small server answers the
failover drill's probes in a region's place: ``GET /healthz`` gives ``{"region": ..., "ok": true}``
while healthy and 503 when marked down. Run ``python -m devenv.health_standin us-east-1 us-west-2`` to
serve one per region (it prints ``REGION=URL`` pairs for ``--endpoint``).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RegionEndpoint:
    """A loopback HTTP server on a free port answering as ``region``; a context manager."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.healthy = True
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the http.server API names it so
                endpoint.requests += 1
                status = 200 if endpoint.healthy else 503
                body = json.dumps({"region": endpoint.region, "ok": endpoint.healthy}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: probes are frequent
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"standin-{region}", daemon=True
        )

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/healthz"

    def start(self) -> RegionEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RegionEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> None:
    regions = argv or ["us-east-1", "us-west-2"]
    endpoints = [RegionEndpoint(region).start() for region in regions]
    for endpoint in endpoints:
        print(f"{endpoint.region}={endpoint.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for endpoint in endpoints:
            endpoint.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
