"""The git forge's pull-request API behind a small Protocol, with GitHub's REST API as its backend.

The token comes from the environment (``GITHUB_TOKEN``) and is never logged or put in an error.
Transient failures (connection errors, 5xx, secondary rate limits) are retried within bounded time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from rollout_policies import envvars
from rollout_policies.errors import UserError

DEFAULT_API_URL = "https://api.github.com"


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    head: str
    base: str
    title: str
    reviewers: tuple[str, ...] = ()


class Forge(Protocol):
    """The few pull-request operations a promotion needs. Every call is safe to repeat."""

    def find_pull(self, head: str) -> PullRequest | None:
        """The open pull request from branch ``head``, if any."""
        ...

    def open_pull(
        self, *, title: str, body: str, head: str, base: str, reviewers: Sequence[str]
    ) -> PullRequest:
        """Open a pull request and request its reviewers (or return the open one from ``head``)."""
        ...

    def comment(self, number: int, body: str) -> None: ...

    def close_pull(self, number: int) -> None:
        """Close a pull request without merging it (closing a closed one is not an error)."""
        ...


class ForgeError(UserError):
    """The forge refused a request or stayed unreachable."""


class _Transient(Exception):
    pass


@dataclass
class GitHubForge:
    """GitHub's REST API (or anything that speaks it, such as the local stand-in in tests)."""

    repository: str  # owner/name
    base_url: str = DEFAULT_API_URL
    token: str | None = None
    client: httpx.Client | None = None
    attempts: int = 4
    seconds: float = 30.0
    first_wait: float = 0.5  # seconds before the first retry; doubles each time, at most 8

    def __post_init__(self) -> None:
        if self.repository.count("/") != 1 or not all(self.repository.split("/")):
            raise UserError(f"--forge-repo {self.repository!r}: write it as owner/name")
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "markethub-rollout",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.client is None:
            self.client = httpx.Client(base_url=self.base_url.rstrip("/"), headers=headers, timeout=15.0)
        else:
            self.client.headers.update(headers)

    @property
    def owner(self) -> str:
        return self.repository.split("/")[0]

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.client is not None
        url = f"/repos/{self.repository}{path}"

        def once() -> httpx.Response:
            assert self.client is not None
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as err:
                raise _Transient(f"{method} {url}: {type(err).__name__}") from None
            limited = response.status_code in (403, 429) and response.headers.get("retry-after")
            if response.status_code >= 500 or limited:
                raise _Transient(f"{method} {url}: HTTP {response.status_code}")
            return response

        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(_Transient),
                stop=stop_after_attempt(self.attempts) | stop_after_delay(self.seconds),
                wait=wait_exponential(multiplier=self.first_wait, max=8),
                reraise=True,
            ):
                with attempt:
                    return once()
        except _Transient as err:
            raise ForgeError(f"forge {self.base_url}: {err} (gave up after {self.attempts} tries)") from None
        raise AssertionError("unreachable")

    @staticmethod
    def _fail(response: httpx.Response, what: str) -> ForgeError:
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = response.text[:200]
        return ForgeError(f"forge: {what}: HTTP {response.status_code} {message}".rstrip())

    @staticmethod
    def _pull(data: dict[str, Any]) -> PullRequest:
        reviewers = tuple(u["login"] for u in data.get("requested_reviewers") or ())
        teams = tuple(t["slug"] for t in data.get("requested_teams") or ())
        return PullRequest(
            number=int(data["number"]),
            url=str(data.get("html_url", "")),
            head=str(data["head"]["ref"]),
            base=str(data["base"]["ref"]),
            title=str(data.get("title", "")),
            reviewers=reviewers + teams,
        )

    def find_pull(self, head: str) -> PullRequest | None:
        response = self._request("GET", "/pulls", params={"head": f"{self.owner}:{head}", "state": "open"})
        if response.status_code != 200:
            raise self._fail(response, f"list pull requests from {head}")
        pulls = response.json()
        return self._pull(pulls[0]) if pulls else None

    def open_pull(
        self, *, title: str, body: str, head: str, base: str, reviewers: Sequence[str]
    ) -> PullRequest:
        pull = self.find_pull(head)
        if pull is None:
            response = self._request(
                "POST", "/pulls", json={"title": title, "body": body, "head": head, "base": base}
            )
            if response.status_code == 422 and "already exists" in response.text:
                # Another run opened it between our look-up and our request: use theirs.
                pull = self.find_pull(head)
            elif response.status_code != 201:
                raise self._fail(response, f"open pull request from {head}")
            else:
                pull = self._pull(response.json())
            if pull is None:
                raise self._fail(response, f"open pull request from {head}")
        missing = [r for r in reviewers if r.lstrip("@").split("/")[-1] not in pull.reviewers]
        if missing:
            pull = self.request_reviewers(pull, missing)
        return pull

    def request_reviewers(self, pull: PullRequest, handles: Sequence[str]) -> PullRequest:
        """Users as ``@login``, teams as ``@org/team`` (sent as team slugs, as GitHub asks)."""
        users = [h.lstrip("@") for h in handles if "/" not in h]
        teams = [h.lstrip("@").split("/", 1)[1] for h in handles if "/" in h]
        payload: dict[str, list[str]] = {"reviewers": users}
        if teams:
            payload["team_reviewers"] = teams
        response = self._request("POST", f"/pulls/{pull.number}/requested_reviewers", json=payload)
        if response.status_code != 201:
            raise self._fail(response, f"request reviewers on #{pull.number}")
        return self._pull(response.json())

    def comment(self, number: int, body: str) -> None:
        response = self._request("POST", f"/issues/{number}/comments", json={"body": body})
        if response.status_code != 201:
            raise self._fail(response, f"comment on #{number}")

    def close_pull(self, number: int) -> None:
        response = self._request("PATCH", f"/pulls/{number}", json={"state": "closed"})
        if response.status_code != 200:
            raise self._fail(response, f"close pull request #{number}")


# name -> factory(repository, base_url). An unknown name is an error, never a silent default.
FORGES: dict[str, Callable[[str, str], Forge]] = {
    "github": lambda repository, base_url: GitHubForge(
        repository=repository, base_url=base_url, token=os.environ.get(envvars.FORGE_TOKEN)
    ),
}


def make_forge(kind: str, repository: str, base_url: str) -> Forge:
    try:
        factory = FORGES[kind]
    except KeyError:
        raise UserError(f"--forge {kind!r}: unknown forge (known: {', '.join(sorted(FORGES))})") from None
    return factory(repository, base_url)
