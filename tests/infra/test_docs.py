"""docs/infra/ has one page per component, and each page lists every config key the component reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.settings import COMPONENT_KEYS, KEYS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "infra"


@pytest.mark.parametrize("page", sorted(COMPONENT_KEYS))
def test_each_component_page_lists_the_keys_it_reads(page):
    text = (DOCS / f"{page}.md").read_text(encoding="utf-8")
    missing = [key for key in COMPONENT_KEYS[page] if f"`markethub-rollout:{key}`" not in text]
    assert missing == []


def test_every_config_key_is_documented_by_some_component():
    documented = {key for keys in COMPONENT_KEYS.values() for key in keys}
    assert set(KEYS) - documented == set()
