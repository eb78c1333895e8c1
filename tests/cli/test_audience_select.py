"""`rollout audience select` against a real PostgreSQL (Debian's, started for the session)."""

from __future__ import annotations

import random

import psycopg
import pytest
import yaml

from rollout_policies import envvars
from rollout_policies.cli.main import main
from rollout_policies.core.audience import pseudonym
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.providers.audience import COLUMNS

pytestmark = pytest.mark.services

SALT = "test-salt-not-a-secret"
CITIES = ["New York", "Los Angeles", "Chicago", "Houston", "Seattle", "Miami"]


def rows(seed: int, count: int) -> list[tuple]:
    rng = random.Random(seed)
    return [
        (
            f"customer-{i:05d}",
            rng.choice(["iOS", "Android"]),
            rng.choice(CITIES),
            rng.choice(
                [
                    "iPhone 15 / iOS 17",
                    "iPhone 13 / iOS 16",
                    "Pixel 8 / Android 14",
                    "Galaxy A54 / Android 13",
                ]
            ),
            rng.randint(0, 12),
            rng.uniform(0, 30),
            rng.random() < 0.8,
            rng.random() < 0.1,
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def analytics(postgres):
    """An analytics database whose users table the analytics team exposes as audience_candidates."""
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS audience_analytics")
        admin.execute("CREATE DATABASE audience_analytics")
    dsn = postgres.dsn_for("audience_analytics")
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "CREATE TABLE users (id text PRIMARY KEY, email text, os text, city text, device text,"
            " orders_90d int, sessions_30d numeric, csat_positive boolean, was_beta boolean)"
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO users VALUES (%s, %s || '@example.com', %s, %s, %s, %s, %s, %s, %s)",
                [(r[0], r[0], *r[1:]) for r in rows(21, 1500)],
            )
        connection.execute(
            "CREATE VIEW audience_candidates AS SELECT id AS user_id, os AS platform, city, device,"
            " orders_90d AS orders_3_months, sessions_30d AS sessions_per_month,"
            " csat_positive AS positive_service_history, was_beta AS previous_beta FROM users"
        )
    return dsn


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_select_writes_the_beta_cohort_with_the_plans_criteria_and_the_achieved_mix(
    analytics, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(envvars.SQL_DSN, analytics)
    monkeypatch.setenv(envvars.AUDIENCE_SALT, SALT)
    monkeypatch.chdir(tmp_path)

    code, out, err = run(["audience", "select", "--stage", "beta"], capsys)

    assert (code, err) == (0, "")
    assert out.strip() == "beta: 50 users (android 40.0%, ios 60.0%) written to cohorts/beta.yaml; commit it"
    text = (tmp_path / "cohorts" / "beta.yaml").read_text()
    document = yaml.safe_load(text)
    beta = load_plan(DEFAULT_PLAN).stage("beta").audience
    assert document["format"] == 1 and document["stage"] == "beta"
    assert document["criteria"] == list(beta.criteria)
    assert document["quotas"] == {"ios": 30, "android": 20}
    assert document["achieved"]["platform"] == {"android": 40.0, "ios": 60.0}
    assert document["achieved"]["cities"] == len(CITIES)
    # the chosen users, found again by their pseudonyms, meet every criterion
    by_pseudonym = {pseudonym(r[0], SALT): r for r in rows(21, 1500)}
    chosen = [by_pseudonym[i] for i in document["ids"]]
    assert len(chosen) == 50
    assert all(r[4] > 5 and r[5] > 10 and r[6] for r in chosen)
    # no personal data: no user id, e-mail or city in the committed file, and not the salt
    assert not any(r[0] in text for r in rows(21, 1500))
    assert "@example.com" not in text and SALT not in text
    assert not any(city in text for city in CITIES)


def test_a_quota_the_database_cannot_fill_is_one_line_naming_it(analytics, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(envvars.SQL_DSN, analytics)
    monkeypatch.setenv(envvars.AUDIENCE_SALT, SALT)
    monkeypatch.chdir(tmp_path)
    # only five Android users with a positive service history in the whole database
    query = f"SELECT {', '.join(COLUMNS)} FROM audience_candidates WHERE platform = 'iOS' OR user_id IN" + (
        " (SELECT user_id FROM audience_candidates WHERE platform = 'Android' AND orders_3_months > 5"
        " AND sessions_per_month > 10 AND positive_service_history ORDER BY user_id LIMIT 5)"
    )

    code, out, err = run(["audience", "select", "--stage", "beta", "--query", query], capsys)

    assert code == 2 and out == ""
    assert err == (
        "rollout: error: stage beta: cannot fill the android quota of 20 users:"
        " only 5 android users meet the criteria\n"
    )
    assert not (tmp_path / "cohorts").exists()


def test_without_a_salt_nothing_is_read_or_written(analytics, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(envvars.SQL_DSN, analytics)
    monkeypatch.delenv(envvars.AUDIENCE_SALT, raising=False)
    monkeypatch.chdir(tmp_path)

    code, _, err = run(["audience", "select", "--stage", "beta"], capsys)

    assert code == 2 and err.startswith("rollout: error: set ROLLOUT_AUDIENCE_SALT")
    assert not (tmp_path / "cohorts").exists()
