"""The ack link's token (issue 19 item 3): signed, expiring, naming notice and person; forged → 403, expired → 410."""

from __future__ import annotations

import stat
from datetime import datetime, timedelta, timezone

import pytest

from services.delivery.tokens import TokenExpired, TokenForged, key_from_file, make_token, read_token

T0 = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)
KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
DAY = timedelta(days=1)


def test_round_trip():
    token = make_token("inc-1.route.gas_office", "p-7", T0, KEY)
    assert read_token(token, T0 + timedelta(hours=3), KEY, DAY) == ("inc-1.route.gas_office", "p-7")


def test_url_safe():
    token = make_token("inc-1:x.y_z-1", "p-7", T0, KEY)
    assert all(c.isalnum() or c in "-_." for c in token)


def test_every_changed_character_is_forged():
    """Each position, including the last (base64's unused trailing bits: only the canonical spelling reads)."""
    token = make_token("inc-1.route.gas_office", "p-7", T0, KEY)
    for i, c in enumerate(token):
        for other in {"A", "B", "."} - {c}:
            changed = token[:i] + other + token[i + 1:]
            with pytest.raises(TokenForged):
                read_token(changed, T0, KEY, DAY)


def test_past_max_age_is_expired_and_just_within_is_not():
    token = make_token("k", "p", T0, KEY)
    assert read_token(token, T0 + DAY, KEY, DAY) == ("k", "p")
    with pytest.raises(TokenExpired):
        read_token(token, T0 + DAY + timedelta(seconds=1), KEY, DAY)


def test_another_key_is_forged_even_when_expired():
    token = make_token("k", "p", T0, OTHER)
    with pytest.raises(TokenForged):
        read_token(token, T0, KEY, DAY)
    with pytest.raises(TokenForged):
        read_token(token, T0 + 10 * DAY, KEY, DAY)


@pytest.mark.parametrize("junk", ["", ".", "abc", "a.b.c", "!!!.???", "x" * 500])
def test_junk_is_forged(junk):
    with pytest.raises(TokenForged):
        read_token(junk, T0, KEY, DAY)


def test_forged_and_expired_are_distinct():
    assert not issubclass(TokenForged, TokenExpired) and not issubclass(TokenExpired, TokenForged)


def test_naive_clock_refused():
    with pytest.raises(ValueError, match="timezone"):
        make_token("k", "p", datetime(2026, 11, 22, 9, 30), KEY)


def test_key_file_made_once_readable_by_owner_only(tmp_path):
    path = tmp_path / ".data" / "ack.key"
    key = key_from_file(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_from_file(path) == key
    token = make_token("k", "p", T0, key)
    assert read_token(token, T0, key_from_file(path), DAY) == ("k", "p")
