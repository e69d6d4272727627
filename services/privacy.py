"""Personal data of citizens: sealed (Fernet, authenticated encryption) before it reaches a topic,
and scrubbed from every log line by a structlog processor."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.fernet import Fernet, InvalidToken

from pydantic import BaseModel

from topics.models import PrivateDetails

M = TypeVar("M", bound=BaseModel)

# Keys whose values are personal data or free text that may hold it: never logged.
PRIVATE_KEYS = frozenset({"reporter", "name", "phone", "summary", "address", "private_sealed",
                          "mobile", "email", "contacts", "sealed"})


class Sealer:
    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    @classmethod
    def from_file(cls, path: Path) -> "Sealer":
        """The key is made once, readable by the service's user only, and kept beside the data."""
        key_once(path, Fernet.generate_key)
        return cls(path.read_bytes().strip())

    def seal(self, details: PrivateDetails) -> str | None:
        if details == PrivateDetails():
            return None
        return self._fernet.encrypt(details.model_dump_json().encode()).decode()

    def seal_text(self, text: str) -> str | None:
        """Free text of a filed report: it may name citizens, so it travels sealed too."""
        return self._fernet.encrypt(text.encode()).decode() if text else None

    def open_text(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("sealed: cannot be opened with this key") from exc

    def seal_model(self, model: BaseModel) -> str:
        """Any personal record (a duty person's name and contacts) as one sealed string."""
        return self._fernet.encrypt(model.model_dump_json().encode()).decode()

    def open_model(self, sealed: str, model: type[M]) -> M:
        try:
            return model.model_validate_json(self._fernet.decrypt(sealed.encode()))
        except InvalidToken as exc:
            raise ValueError("sealed: cannot be opened with this key") from exc

    def open(self, sealed: str) -> PrivateDetails:
        try:
            return PrivateDetails.model_validate_json(self._fernet.decrypt(sealed.encode()))
        except InvalidToken as exc:
            raise ValueError("private_sealed: cannot be opened with this key") from exc


def key_once(path: Path, make: Callable[[], bytes]) -> None:
    """A key file made once, owner-only, whole or not at all: written aside, then linked into place, so
    API replicas and workers starting together on one data dir all read the one key that won (a
    process that opened the file itself could read it empty, and another would seal with its own)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(make())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the key
    finally:
        aside.unlink(missing_ok=True)


def scrub(_logger, _method, event: dict) -> dict:
    """structlog processor: drop personal data whatever the caller bound."""
    for key in PRIVATE_KEYS & event.keys():
        event[key] = "[redacted]"
    return event
