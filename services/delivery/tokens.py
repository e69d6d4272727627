"""The ack link's token (issue 19 item 3): `/ack/{token}` names a notice (its dedup_key) and a
person, signed and expiring.

HMAC-SHA256 from the standard library, not itsdangerous: the clock is passed in as a datetime (its
TimestampSigner reads time.time() and would have to be subclassed to take ours), forged and expired
are our own two errors (403 and 410), and it is a dozen lines with no new dependency.

A token is `payload.signature`, both base64url without padding; the payload is
`v1\\n{dedup_key}\\n{person_id}\\n{issued unix seconds}` and the signature covers it with a purpose
prefix, so a key used for anything else never signs an ack. The signature is checked before the age
(a forged token is forged, however old), and compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from services.privacy import key_once

_VERSION = "v1"
_PURPOSE = b"yingji.ack-link.v1\n"
KEY_FILE_NAME = "ack.key"  # beside the seal key, under the settings' data_dir
_KEY_BYTES = 32


class TokenForged(ValueError):
    """Not a token this key signed (or not a token at all): answer 403, acknowledge nothing."""


class TokenExpired(ValueError):
    """A genuine token older than its max_age: answer 410, acknowledge nothing."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the one canonical spelling decodes (base64's unused trailing bits would otherwise
    let a changed last character read as the same bytes)."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _sign(payload: bytes, key: bytes) -> bytes:
    return hmac.new(key, _PURPOSE + payload, hashlib.sha256).digest()


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now: must carry its timezone")
    return now


def make_token(dedup_key: str, person_id: str, now: datetime, key: bytes) -> str:
    """The token of an ack link for `person_id` on notice `dedup_key`, issued at `now`."""
    for name, value in (("dedup_key", dedup_key), ("person_id", person_id)):
        if not value or "\n" in value:
            raise ValueError(f"{name}: must be a non-empty id")
    issued = int(_aware(now).timestamp())
    payload = f"{_VERSION}\n{dedup_key}\n{person_id}\n{issued}".encode()
    return f"{_b64(payload)}.{_b64(_sign(payload, key))}"


def read_token(token: str, now: datetime, key: bytes, max_age: timedelta) -> tuple[str, str]:
    """(dedup_key, person_id) of a token this key signed, no older than max_age at `now`.
    Raises TokenForged (403) or TokenExpired (410)."""
    try:
        payload_b64, sig_b64 = token.split(".")
        payload, sig = _unb64(payload_b64), _unb64(sig_b64)
    except (ValueError, binascii.Error) as exc:
        raise TokenForged("not an ack token") from exc
    if not hmac.compare_digest(sig, _sign(payload, key)):
        raise TokenForged("ack token: bad signature")
    try:
        version, dedup_key, person_id, issued_text = payload.decode().split("\n")
        issued = int(issued_text)
    except ValueError as exc:  # signed by us, so only a token of another format version
        raise TokenForged("ack token: unknown format") from exc
    if version != _VERSION:
        raise TokenForged("ack token: unknown format")
    age = _aware(now).timestamp() - issued
    if age > max_age.total_seconds():
        raise TokenExpired(f"ack token: expired ({int(age)} s old, at most {int(max_age.total_seconds())} s)")
    return dedup_key, person_id


def key_from_file(path: Path) -> bytes:
    """The signing key, made once (32 random bytes, hex), readable by the service's user only, kept
    beside the seal key (.data/ack.key): as services.privacy.Sealer.from_file does for that one."""
    key_once(path, lambda: secrets.token_hex(_KEY_BYTES).encode("ascii"))
    text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"{path.name}: not a hex key") from exc
    if len(key) < _KEY_BYTES:
        raise ValueError(f"{path.name}: key shorter than {_KEY_BYTES} bytes")
    return key
