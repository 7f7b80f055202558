"""The terminal side of `peers watch`: single keys without Enter, and a clean exit.

:func:`key_mode` turns echo and line buffering off on a tty (Ctrl-C still
sends SIGINT) and always puts the previous settings back, even when the tty
went away. :func:`parse_keys` turns raw bytes into key names.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from collections.abc import Iterator

__all__ = ["key_mode", "parse_keys", "read_available"]

_SEQUENCES = {
    b"\x1b[Z": "shift-tab",
    b"\x1b[A": "up",
    b"\x1b[B": "down",
    b"\x1b[C": "right",
    b"\x1b[D": "left",
}


@contextlib.contextmanager
def key_mode(fd: int) -> Iterator[bool]:
    """Keys one at a time on ``fd`` while inside; yields False when ``fd`` is no terminal."""
    try:
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError):
        yield False
        return
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield True
    finally:
        # A hung-up terminal refuses this: nothing is left to restore then.
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def parse_keys(data: bytes) -> list[str]:
    """Key names in ``data``: printable characters as themselves, ``tab``, ``esc``, arrows."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        for seq, name in _SEQUENCES.items():
            if data.startswith(seq, i):
                keys.append(name)
                i += len(seq)
                break
        else:
            byte = data[i : i + 1]
            i += 1
            if byte == b"\t":
                keys.append("tab")
            elif byte == b"\x1b":
                keys.append("esc")
            elif byte in (b"\r", b"\n"):
                keys.append("enter")
            elif byte == b"\x03":
                keys.append("ctrl-c")
            elif byte == b"\x04":
                keys.append("ctrl-d")
            else:
                text = byte.decode("latin-1")
                if text.isprintable():
                    keys.append(text)
    return keys


def read_available(fd: int) -> bytes | None:
    """What the tty has ready (called when it is readable); None when it is gone."""
    try:
        data = os.read(fd, 256)
    except (BlockingIOError, InterruptedError):
        return b""
    except OSError:
        return None
    return data or None
