"""The webhook over HTTP: an ASGI app (Starlette) on uvicorn, with the limits a reachable endpoint needs.

``WebhookReceiver.handle`` stays the whole behaviour; this module only moves bytes to it, and guards
the way in:

- the bearer token is checked on the headers, before a byte of the body is read;
- the request head must arrive within ``header_timeout`` of the connection (or of the previous
  answer), the body within ``body_timeout``; an idle keep-alive connection closes after
  ``idle_timeout``; slow senders get 408 and lose the connection;
- at most ``max_connections`` connections and requests at once (beyond: 503 from uvicorn);
- bodies may be chunked; a body over the size cap is refused (413) as soon as it passes the cap;
- a rollback runs in a worker thread, so health checks and refusals never wait behind it; on SIGTERM
  the server stops accepting and finishes the requests in flight, a rollback included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread
import h11
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response as HttpResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from rollout_policies.alerting.payload import PayloadRejected
from rollout_policies.alerting.receiver import MAX_BODY, WEBHOOK_PATHS, Response, WebhookReceiver

log = logging.getLogger("rollout.alerting")

# A refused body up to this size is drained rather than cut off: closing a socket with unread data
# sends a reset, which can destroy the answer before the client reads it.
DRAIN_LIMIT = 64 * 1024
# Alertmanager sends a few hundred bytes of headers; h11 bounds only a head that arrives in pieces.
MAX_HEADERS = 16 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """How long and how many: the defaults suit Alertmanager, which sends small bodies at once."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_connections: int = 2048
    max_body: int = MAX_BODY
    backlog: int = 2048


class _TooLarge(Exception):
    pass


def _answer(response: Response, *, close: bool = False) -> HttpResponse:
    headers = {"connection": "close"} if close else None
    return HttpResponse(response.body, response.status, headers=headers, media_type=response.content_type)


def webhook_app(receiver: WebhookReceiver, limits: ServerLimits) -> Starlette:
    """The receiver as an ASGI application."""

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "-"

    def headers_of(request: Request) -> dict[str, str]:
        return {key.lower(): value for key, value in request.headers.items()}

    async def read_body(request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def refuse(client: str, status: int, reason: str, message: str, declared: int | None) -> HttpResponse:
        response = receiver.refuse(client, PayloadRejected(status, reason, message))
        return _answer(response, close=declared is None or declared > DRAIN_LIMIT)

    async def notification(request: Request) -> HttpResponse:
        client, headers = client_of(request), headers_of(request)
        length = headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        if sum(len(k) + len(v) + 4 for k, v in request.headers.raw) > MAX_HEADERS:
            return refuse(client, 431, "too_large", f"request headers over {MAX_HEADERS} bytes", None)
        if not receiver.authorized(headers):
            # Refused on the headers alone: the body is never read into memory or parsed.
            response = receiver.handle("POST", request.url.path, headers, b"", client)
            return _answer(response, close=declared is None or declared > DRAIN_LIMIT)
        if declared is not None and declared > limits.max_body:
            return refuse(client, 413, "too_large", f"body over {limits.max_body} bytes", declared)
        try:
            with anyio.fail_after(limits.body_timeout):
                body = await read_body(request)
        except _TooLarge:
            return refuse(client, 413, "too_large", f"body over {limits.max_body} bytes", None)
        except TimeoutError:
            message = f"body not received within {limits.body_timeout:g}s"
            return refuse(client, 408, "timeout", message, None)
        except ClientDisconnect:
            return HttpResponse(status_code=400)  # nobody is left to read an answer
        # A rollback (git, pulumi) blocks: a worker thread keeps the event loop answering.
        response = await anyio.to_thread.run_sync(
            receiver.handle, "POST", request.url.path, headers, body, client
        )
        return _answer(response)

    async def get(request: Request) -> HttpResponse:
        return _answer(receiver.handle("GET", request.url.path, headers_of(request), b"", client_of(request)))

    async def not_found(request: Request, exc: Exception) -> HttpResponse:
        # Unknown paths and methods get handle()'s own answer (a counted, logged 404).
        response = receiver.handle(
            request.method, request.url.path, headers_of(request), b"", client_of(request)
        )
        return _answer(response)

    routes = [Route(path, notification, methods=["POST"]) for path in WEBHOOK_PATHS]
    routes += [Route("/healthz", get, methods=["GET"]), Route("/metrics", get, methods=["GET"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


def _guarded_protocol(limits: ServerLimits, on_timeout: Callable[[str], None]) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for each request head, which uvicorn does not have.

    uvicorn's keep-alive timer is cancelled by any byte received, so a client sending one byte a
    second holds its connection for ever. Here the head of every request must be complete within
    ``header_timeout`` of the connection or of the previous answer, however the bytes trickle in.
    """
    body = json.dumps({"error": f"request head not received within {limits.header_timeout:g}s"}).encode()
    timeout_answer = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + f"content-length: {len(body) + 1}\r\n\r\n".encode()
        + body
        + b"\n"
    )

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _armed_for: object = None

        def _arm(self) -> None:
            self._disarm()
            self._armed_for = self.cycle
            self._deadline = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._deadline is not None and self.cycle is not self._armed_for:
                self._disarm()  # a new request's head arrived in time

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _head_timed_out(self) -> None:
            self._deadline = None
            if self.transport.is_closing() or self.cycle is not self._armed_for:
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request in flight: its body has its own deadline
            client = self.client[0] if self.client else "-"
            on_timeout(client)
            if self.conn.their_state is h11.IDLE or self.conn.our_state is h11.DONE:
                self.transport.write(timeout_answer)
            self.transport.close()

    return GuardedH11Protocol


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class RunningReceiver:
    """A receiver served by uvicorn on ``host:port``; ``url`` is where Alertmanager posts.

    ``serve_forever()`` runs in the calling (main) thread and stops gracefully on SIGTERM or Ctrl-C;
    ``start()`` / ``stop()`` (or ``with``) run it in a background thread, for tests and tools. The
    socket is bound at construction, so a taken port fails here with OSError.
    """

    def __init__(
        self,
        receiver: WebhookReceiver,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
    ) -> None:
        self.receiver = receiver
        self.limits = limits or ServerLimits()
        self.socket = _bind(host, port, self.limits.backlog)
        address = self.socket.getsockname()
        self.host, self.port = str(address[0]), int(address[1])

        def timed_out(client: str) -> None:
            receiver.metrics.rejected.labels("timeout").inc()
            log.info(
                "webhook connection from %s closed: request head not received in time (HTTP 408)", client
            )

        config = uvicorn.Config(
            webhook_app(receiver, self.limits),
            http=_guarded_protocol(self.limits, timed_out),
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=max(1, round(self.limits.idle_timeout)),
            limit_concurrency=self.limits.max_connections,
            backlog=self.limits.backlog,
            timeout_graceful_shutdown=None,  # a rollback in flight always finishes
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.serve_forever, name="rollout-serve", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self) -> RunningReceiver:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the webhook server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=60)
        self.socket.close()

    def __enter__(self) -> RunningReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
