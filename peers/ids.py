"""Identifiers: short random peer ids and sortable (ULID-like) message ids."""

from __future__ import annotations

import os
import secrets
import threading
import time

__all__ = ["new_message_id", "new_peer_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


# Every 10-bit value as its two characters: encoding takes one lookup per 10 bits.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)


def _encode(value: int, length: int) -> str:
    """The low ``5 * length`` bits of ``value`` in base32, most significant first."""
    out = []
    for _ in range(length // 2):
        out.append(_PAIRS[value & 1023])
        value >>= 10
    if length % 2:
        out.append(_ALPHABET[value & 31])
    return "".join(reversed(out))


def new_peer_id() -> str:
    """Ten random base32 characters: short enough to type, 50 bits of entropy."""
    return _encode(secrets.randbits(50), 10)


def new_message_id() -> str:
    """26 characters, sortable by creation time and monotonic within a process."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same millisecond (or clock went back): bump the random part so that
            # ids stay strictly increasing for this sender.
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms, _last_rand = ms, rand
    return _encode(ms, 10) + _encode(rand, 16)
