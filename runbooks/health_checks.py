"""Route 53 health checks of the regions' probe URLs: created once, found again by their caller reference.

The failover records (external-dns annotations from the Pulumi program, or the drill's own records
locally) name these checks by id. ``rollout bootstrap health-checks`` creates them and writes the ids
into each region's stack config; running it again creates nothing and rewrites nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from rollout_policies.errors import UserError


def caller_reference(service: str, region: str, probe_url: str) -> str:
    """The same check always has the same reference, so a second run finds it instead of adding one.

    The URL's digest is in it: a changed probe URL is a new check (Route 53 cannot edit a check's
    address and type in place)."""
    digest = hashlib.sha256(probe_url.encode()).hexdigest()[:16]
    return f"{service}-{region}-{digest}"[-64:]  # Route 53 allows 64 characters


def health_check_config(probe_url: str) -> dict[str, Any]:
    """A Route 53 HTTP(S) health check of ``probe_url``. Pure."""
    url = urlsplit(probe_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UserError(f"probe URL {probe_url!r}: expected http(s)://HOST[:PORT]/PATH")
    config: dict[str, Any] = {
        "Type": "HTTPS" if url.scheme == "https" else "HTTP",
        "FullyQualifiedDomainName": url.hostname,
        "Port": url.port or (443 if url.scheme == "https" else 80),
        "ResourcePath": (url.path or "/") + (f"?{url.query}" if url.query else ""),
        "RequestInterval": 10,
        "FailureThreshold": 3,
    }
    if url.hostname.replace(".", "").isdigit():
        config["IPAddress"] = config.pop("FullyQualifiedDomainName")
    return config


def existing_health_checks(route53: Any) -> dict[str, str]:
    """Caller reference -> health check id, for every health check of the account."""
    found = {}
    marker: str | None = None
    while True:
        page = route53.list_health_checks(**({"Marker": marker} if marker else {}))
        for check in page.get("HealthChecks", []):
            found[str(check["CallerReference"])] = str(check["Id"])
        if not page.get("IsTruncated"):
            return found
        marker = page.get("NextMarker")


def ensure_health_checks(route53: Any, service: str, probe_urls: Mapping[str, str]) -> dict[str, str]:
    """Region -> the id of its health check, creating the ones that do not exist yet. Idempotent."""
    existing = existing_health_checks(route53)
    ids = {}
    for region in sorted(probe_urls):
        reference = caller_reference(service, region, probe_urls[region])
        if reference not in existing:
            check = route53.create_health_check(
                CallerReference=reference, HealthCheckConfig=health_check_config(probe_urls[region])
            )
            existing[reference] = str(check["HealthCheck"]["Id"])
            route53.change_tags_for_resource(
                ResourceType="healthcheck",
                ResourceId=existing[reference],
                AddTags=[{"Key": "Name", "Value": f"{service} {region}"}, {"Key": "region", "Value": region}],
            )
        ids[region] = existing[reference]
    return ids
