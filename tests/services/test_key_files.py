"""The seal key and the ack key are made once, whole, by whichever process comes first: API replicas and
workers starting together on one data dir all read the same key (issue 22 item 2), never an empty file."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ProcessPoolExecutor

from services.delivery.tokens import key_from_file
from services.privacy import Sealer


def seal_key(path: str) -> bytes:
    sealer = Sealer.from_file(__import__("pathlib").Path(path))
    return sealer._fernet._signing_key + sealer._fernet._encryption_key  # noqa: SLF001 - the key itself


def ack_key(path: str) -> bytes:
    return key_from_file(__import__("pathlib").Path(path))


def test_processes_starting_together_share_one_seal_key_and_one_ack_key(tmp_path):
    with ProcessPoolExecutor(6) as pool:
        seals = set(pool.map(seal_key, [str(tmp_path / "seal.key")] * 12))
        acks = set(pool.map(ack_key, [str(tmp_path / "ack.key")] * 12))
    assert len(seals) == 1 and len(acks) == 1
    for name in ("seal.key", "ack.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ack.key", "seal.key"]  # nothing left aside
