"""Keys to slots to workers.

A key maps to one of 16384 slots by xxh3_64 of the key, or of its ``{hash tag}`` when it has a
non-empty one (Redis Cluster's rule: the part between the first ``{`` and the first ``}`` after
it).  Slots map to workers through a :class:`SlotMap`, a plain table, so resharding later only
rewrites the table: command code never sees worker numbers, only keys.
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash

SLOT_COUNT = 16384
SLOT_MASK = SLOT_COUNT - 1
xxh3 = xxhash.xxh3_64_intdigest


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed: its hash tag if it has a non-empty one, else itself."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes) -> int:
    """The slot of ``key`` (0..16383)."""
    if b"{" in key:
        key = hash_tag(key)
    return xxh3(key) & SLOT_MASK


class SlotMap:
    """Which worker owns each slot.  By default contiguous, even ranges, like Redis Cluster."""

    __slots__ = ("owners", "worker_count")

    def __init__(self, worker_count: int, owners: list[int] | None = None) -> None:
        if worker_count < 1:
            raise ValueError("at least one worker is needed")
        self.worker_count = worker_count
        self.owners = owners or [slot * worker_count // SLOT_COUNT for slot in range(SLOT_COUNT)]

    def worker_of(self, key: bytes) -> int:
        """The index of the worker that owns ``key``."""
        if b"{" in key:
            key = hash_tag(key)
        return self.owners[xxh3(key) & SLOT_MASK]

    def workers_of(self, keys: Iterable[bytes]) -> set[int]:
        return {self.worker_of(key) for key in keys}

    def slots_of(self, worker: int) -> list[int]:
        return [slot for slot, owner in enumerate(self.owners) if owner == worker]
