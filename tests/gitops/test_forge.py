"""The GitHub client against the stand-in, and the stand-in's validation against GitHub's description.

The stand-in replaces GitHub, which cannot be reached here; its checks come from the OpenAPI
description in the npm package @octokit/openapi.
"""

from __future__ import annotations

import httpx

from devenv.forge_standin import ForgeStandIn
from rollout_policies.gitops.forge import GitHubForge


def test_open_pull_is_idempotent_and_requests_users_and_teams(forge: tuple[str, ForgeStandIn]) -> None:
    url, standin = forge
    client = GitHubForge("markethub/rollout", base_url=url, token="test-token")
    first = client.open_pull(
        title="t", body="b", head="rollout/x/s-step-1", base="main", reviewers=["@cto", "@org/leads"]
    )
    second = client.open_pull(title="t", body="b", head="rollout/x/s-step-1", base="main", reviewers=["@cto"])
    assert first.number == second.number == 1
    assert set(first.reviewers) == {"cto", "leads"}
    client.comment(first.number, "preview: 1 to update")
    assert standin.pulls[0].comments == ["preview: 1 to update"]


def test_stand_in_rejects_a_body_github_would_reject(forge: tuple[str, ForgeStandIn]) -> None:
    url, standin = forge
    response = httpx.post(
        f"{url}/repos/markethub/rollout/issues/1/comments",
        json={"text": "no body field"},
        headers={"User-Agent": "t", "Authorization": "Bearer test-token"},
    )
    assert response.status_code == 422
    assert standin.violations == [
        "POST /repos/markethub/rollout/issues/1/comments: "
        "issues/create-comment: body: 'body' is a required property"
    ]
    standin.violations.clear()  # seen and checked; the fixture fails on any other


def test_stand_in_rejects_an_operation_github_does_not_have(forge: tuple[str, ForgeStandIn]) -> None:
    url, standin = forge
    response = httpx.post(
        f"{url}/repos/markethub/rollout/pulls/1/approve",
        json={},
        headers={"User-Agent": "t", "Authorization": "Bearer test-token"},
    )
    assert response.status_code == 422
    assert "is not an operation of GitHub's REST API" in standin.violations[0]
    standin.violations.clear()


def test_client_retries_server_errors_then_succeeds(forge: tuple[str, ForgeStandIn]) -> None:
    url, standin = forge
    standin.fail_next = 2
    client = GitHubForge("markethub/rollout", base_url=url, token="test-token", first_wait=0.01)
    assert client.find_pull("nothing") is None
    assert len(standin.requests) == 3


def test_token_is_sent_but_never_in_errors(forge: tuple[str, ForgeStandIn]) -> None:
    url, _ = forge
    client = GitHubForge("markethub/rollout", base_url=url, token="wrong-secret-token")
    try:
        client.find_pull("x")
    except Exception as err:  # a 401 from the stand-in
        assert "wrong-secret-token" not in str(err)
        assert "401" in str(err)
    else:
        raise AssertionError("a bad token must fail")
