"""JSON over HTTP: GET a URL and read one number by a dotted path (a crash reporter, a survey tool).

Two ways to write a source:
- ``options.field`` is the dotted path to the value (``data.crash_free_rate``, ``items.0.nps``) and
  ``query`` is the URL, or a path joined to a base URL;
- without ``options.field``, ``query`` is the dotted path and ``options.path`` the path.
The base URL is ``options.base`` (a name in the settings' base URLs, e.g. ``crash_reporter``),
else ``options.url_env`` (an environment variable holding it; the settings' base URLs may also
hold that name), else the settings' default base URL.
``options.observed_at_field`` optionally names a timestamp (ISO 8601 or epoch seconds), otherwise
the time of the request is used. ``options.token_env`` names an environment variable holding a
bearer token (never the token itself).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from rollout_policies.core.measurement import Measurement
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers.base import (
    DEFAULT_ATTEMPTS,
    DEFAULT_TIMEOUT,
    NoValues,
    QueryFailed,
    Reading,
    TransientQueryFailure,
    as_utc,
    measure,
    to_float,
    with_retries,
)

_MISSING = object()


class JsonGetter(Protocol):
    """The seam: GET a URL and return its parsed JSON body."""

    def get_json(self, url: str, headers: Mapping[str, str]) -> Any: ...


class HttpJsonGetter:
    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, http: httpx.Client | None = None) -> None:
        self.http = http or httpx.Client(timeout=timeout, follow_redirects=True)

    def get_json(self, url: str, headers: Mapping[str, str]) -> Any:
        try:
            response = self.http.get(url, headers=dict(headers))
        except httpx.TimeoutException as err:
            raise TransientQueryFailure(f"timed out asking {url}") from err
        except httpx.TransportError as err:
            raise TransientQueryFailure(f"cannot reach {url}: {err}") from err
        except httpx.HTTPError as err:  # a malformed URL and the like
            raise QueryFailed(f"cannot ask {url}: {err}") from err
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientQueryFailure(f"HTTP {response.status_code} from {url}")
        if response.status_code != 200:
            raise QueryFailed(f"HTTP {response.status_code} from {url}")
        try:
            return response.json()
        except ValueError as err:
            raise QueryFailed(f"{url} did not answer JSON") from err


def pick(document: Any, path: str) -> Any:
    """The value at a dotted path; list items by index. Missing parts raise QueryFailed."""
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            index = int(part)
            node = node[index] if -len(node) <= index < len(node) else _MISSING
        else:
            node = _MISSING
        if node is _MISSING:
            raise QueryFailed(f"field {path!r} is not in the response (no {part!r})")
    return node


def parse_time(raw: Any, path: str) -> datetime:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        # Epoch milliseconds are common in crash reporters; seconds will not reach 1e11 for millennia.
        seconds = raw / 1000 if raw > 1e11 else raw
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(raw, str):
        try:
            return as_utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise QueryFailed(f"field {path!r} is not a time (ISO 8601 or epoch seconds): {raw!r}")


class JsonHttpProvider:
    """Numbers from JSON APIs; settings: ``base_urls`` (name -> URL) and ``base_url`` (the default)."""

    name = "json_http"

    def __init__(
        self,
        *,
        base_urls: Mapping[str, str] | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        getter: JsonGetter | None = None,
    ) -> None:
        self.base_urls = dict(base_urls or {})
        self.base_url = base_url
        self.getter = getter or HttpJsonGetter(timeout=timeout)
        self.attempts = attempts

    @staticmethod
    def field_for(source: MetricSource) -> str:
        field = source.options.get("field") or source.query.strip()
        if not field:
            raise QueryFailed("the source needs options.field (or the field's dotted path as its query)")
        return str(field)

    def base_for(self, source: MetricSource) -> str:
        base_name = source.options.get("base")
        url_env = source.options.get("url_env")
        if base_name is not None:
            base = self.base_urls.get(str(base_name))
            if not base:
                known = ", ".join(sorted(self.base_urls)) or "none"
                raise QueryFailed(
                    f"no base URL named {base_name!r} (known: {known}; set ROLLOUT_JSON_BASE_URLS)"
                )
            return base
        if url_env:
            base = os.environ.get(str(url_env)) or self.base_urls.get(str(url_env))
            if not base:
                raise QueryFailed(f"environment variable {url_env} (options.url_env) is not set")
            return base
        if self.base_url:
            return self.base_url
        raise QueryFailed("no base URL: set options.base, options.url_env or a default base URL")

    def url_for(self, source: MetricSource) -> str:
        if source.options.get("field"):
            target = source.query.strip()  # the query is the location
        else:
            target = str(source.options.get("path") or "")  # the query is the field
        if target.startswith(("http://", "https://")):
            return target
        base = self.base_for(source)
        return f"{base.rstrip('/')}/{target.lstrip('/')}" if target else base

    def headers_for(self, source: MetricSource) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token_env = source.options.get("token_env")
        if token_env:
            token = os.environ.get(str(token_env))
            if not token:
                raise QueryFailed(f"environment variable {token_env} (options.token_env) is not set")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        now = as_utc(now)

        def read() -> Reading:
            field = self.field_for(source)
            document = self.getter.get_json(self.url_for(source), self.headers_for(source))
            value = to_float(pick(document, str(field)), f"field {field!r}")
            stamp_field = source.options.get("observed_at_field")
            if stamp_field:
                raw_time = pick(document, str(stamp_field))
                if raw_time is None:
                    raise NoValues(f"field {stamp_field!r} is null")
                observed_at = parse_time(raw_time, str(stamp_field))
            else:
                observed_at = now
            return Reading(value, observed_at)

        return measure(self.name, metric, source, now, read, attempts=self.attempts)

    def is_online(self) -> bool:
        """Every configured base URL answers (any status below 500 counts: the server is there)."""
        urls = [*self.base_urls.values(), *([self.base_url] if self.base_url else [])]
        for url in urls:
            try:
                with_retries(lambda url=url: self.getter.get_json(url, {}), attempts=1)  # type: ignore[misc]
            except TransientQueryFailure:
                return False
            except QueryFailed:
                continue
        return True
