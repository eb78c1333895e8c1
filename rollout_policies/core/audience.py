"""Audiences: the beta cohort chosen from candidates, and sticky assignment of users to the candidate.

Pure: candidates in, the chosen pseudonymous ids and the achieved mix out. The database query and
the file the cohort is written to are at the edge (``providers/audience.py``, ``cli/audience_cmd.py``).

Cohort selection reads the plan's own words. Each criterion of a cohort audience is one of:
- a threshold, "Active users (>5 orders in last 3 months)", "High app engagement (>10 sessions/month)";
- a filter, "Customer service interaction history (positive)";
- a preference, "Previous beta participation (if available)": such users are taken first;
- a spread, "Diverse device/OS versions" (and the profile's "Geographic diversity"): each pick
  prefers a device (city) not yet in the cohort.
A criterion in none of these forms is an error, so a new criterion in the plan is never silently
ignored. The platform split is a quota per platform (largest remainder of ``size`` x percent).

Sticky assignment: ``bucket(user_id, salt)`` is a consistent hash in [0, 10000); a user is on the
candidate iff ``bucket < weight * 100``. The set of candidate users at weight w is contained in the
set at any larger weight, so growing 2% -> 5% -> 10% never moves a candidate user back, and weight 0
(a rollback) puts every user on the stable version.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rollout_policies.errors import UserError
from rollout_policies.plan.model import Audience

BUCKETS = 10_000  # 0.01% resolution: weight 2.5 is 250 buckets
PLATFORMS = ("ios", "android")


class CohortError(UserError):
    """The database cannot fill the cohort the plan asks for, or the plan's criteria are unusable."""


def bucket(user_id: str, salt: str) -> int:
    """The user's bucket in [0, BUCKETS): the same for the same user and salt, on every call."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def on_candidate(user_id: str, salt: str, weight: float) -> bool:
    """Whether this user is served the candidate at this traffic weight (percent, 0..100)."""
    if not 0 <= weight <= 100:
        raise ValueError(f"weight {weight} is not a percentage")
    return bucket(user_id, salt) < round(weight * BUCKETS / 100)


def pseudonym(user_id: str, salt: str) -> str:
    """A pseudonymous id: HMAC-SHA256 of the user id keyed by the secret salt, 32 hex digits."""
    if not salt:
        raise CohortError("no pseudonym salt: the cohort file must not hold raw user ids")
    return hmac.new(salt.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Candidate:
    """One user as the analytics database describes them (never written out: only the pseudonym is)."""

    user_id: str
    platform: str  # ios | android
    city: str
    device: str  # model and OS version, e.g. "Pixel 7 / Android 14"
    orders_3_months: int
    sessions_per_month: float
    positive_service_history: bool
    previous_beta: bool = False


@dataclass(frozen=True)
class Rules:
    """The plan's cohort criteria, read into checks."""

    min_orders_3_months: int | None = None  # more than this many
    min_sessions_per_month: float | None = None  # more than this many
    positive_service_history: bool = False
    prefer_previous_beta: bool = False
    spread: tuple[str, ...] = ()  # attributes each pick diversifies: device, city

    def eligible(self, candidate: Candidate) -> bool:
        if self.min_orders_3_months is not None and not candidate.orders_3_months > self.min_orders_3_months:
            return False
        if (
            self.min_sessions_per_month is not None
            and not candidate.sessions_per_month > self.min_sessions_per_month
        ):
            return False
        return not (self.positive_service_history and not candidate.positive_service_history)


_ORDERS = re.compile(r">\s*(\d+)\s+orders\b", re.IGNORECASE)
_SESSIONS = re.compile(r">\s*(\d+(?:\.\d+)?)\s+sessions\s*/\s*month", re.IGNORECASE)


def rules_from(audience: Audience) -> Rules:
    """The checks the plan's criteria and profile name; a criterion not understood is a CohortError."""
    found: dict[str, object] = {}
    spread: list[str] = []
    for criterion in audience.criteria:
        text = criterion.lower()
        if orders := _ORDERS.search(criterion):
            found["min_orders_3_months"] = int(orders.group(1))
        elif sessions := _SESSIONS.search(criterion):
            found["min_sessions_per_month"] = float(sessions.group(1))
        elif "customer service" in text and "positive" in text:
            found["positive_service_history"] = True
        elif "previous beta" in text:
            found["prefer_previous_beta"] = True
        elif "diverse device" in text:
            spread.append("device")
        else:
            raise CohortError(f"cohort criterion {criterion!r} is not one cohort selection can apply")
    # The profile describes the cohort; only its geographic diversity is measurable in the data.
    if any("geographic diversity" in line.lower() for line in audience.profile):
        spread.append("city")
    return Rules(spread=tuple(spread), **found)  # type: ignore[arg-type]


def platform_quotas(audience: Audience) -> dict[str, int]:
    """Users per platform: the split's percentages of ``size``, rounded by largest remainder."""
    if audience.size is None:
        raise CohortError("the audience has no size: cohort selection needs one")
    if audience.platform_split is None:
        return {"any": audience.size}
    shares = {p: audience.size * float(getattr(audience.platform_split, p)) / 100 for p in PLATFORMS}
    quotas = {p: int(share) for p, share in shares.items()}
    by_remainder = sorted(PLATFORMS, key=lambda p: (-(shares[p] - quotas[p]), p))
    for platform in by_remainder[: audience.size - sum(quotas.values())]:
        quotas[platform] += 1
    return quotas


@dataclass(frozen=True)
class Cohort:
    """The chosen users, as pseudonyms, and the mix they achieve."""

    ids: tuple[str, ...]  # pseudonyms, sorted
    quotas: dict[str, int]
    mix: dict[str, object] = field(default_factory=dict)


def _pick(pool: Sequence[Candidate], count: int, rules: Rules, salt: str) -> list[Candidate]:
    """Greedy: each pick prefers a previous beta user, then an unseen device and city, then the
    pseudonym order (a salted shuffle, so no one is picked for sorting first by id)."""
    remaining = sorted(pool, key=lambda c: pseudonym(c.user_id, salt))
    chosen: list[Candidate] = []
    seen: dict[str, set[str]] = {attribute: set() for attribute in rules.spread}
    for _ in range(count):

        def score(candidate: Candidate) -> tuple[int, ...]:
            new = [int(getattr(candidate, a) not in seen[a]) for a in rules.spread]
            return (int(rules.prefer_previous_beta and candidate.previous_beta), *new)

        best = max(range(len(remaining)), key=lambda i: (score(remaining[i]), -i))
        picked = remaining.pop(best)
        chosen.append(picked)
        for attribute in rules.spread:
            seen[attribute].add(getattr(picked, attribute))
    return chosen


def select_cohort(audience: Audience, candidates: Iterable[Candidate], salt: str, *, stage: str) -> Cohort:
    """The cohort for a stage's audience, or a CohortError naming the quota the candidates cannot fill."""
    if audience.kind != "cohort":
        raise CohortError(f"stage {stage}'s audience is a {audience.kind}, not a cohort to select")
    rules = rules_from(audience)
    quotas = platform_quotas(audience)
    eligible = [c for c in candidates if rules.eligible(c)]
    chosen: list[Candidate] = []
    for platform, quota in quotas.items():
        pool = [c for c in eligible if platform == "any" or c.platform == platform]
        if len(pool) < quota:
            raise CohortError(
                f"stage {stage}: cannot fill the {platform} quota of {quota} users:"
                f" only {len(pool)} {platform} users meet the criteria"
            )
        chosen += _pick(pool, quota, rules, salt)
    platforms = Counter(c.platform for c in chosen)
    mix: dict[str, object] = {
        "users": len(chosen),
        "platform": {p: round(100 * platforms[p] / len(chosen), 1) for p in sorted(platforms)},
        "cities": len({c.city for c in chosen}),
        "devices": len({c.device for c in chosen}),
        "previous_beta": sum(c.previous_beta for c in chosen),
        "eligible": len(eligible),
    }
    return Cohort(ids=tuple(sorted(pseudonym(c.user_id, salt) for c in chosen)), quotas=quotas, mix=mix)
