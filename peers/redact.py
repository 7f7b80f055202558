"""Passwords out of everything peers prints: one rule for URLs and for text holding them.

Kept free of heavy imports (only ``re``) so that the CLI, the
installer and the transports can all use it.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_text", "redact_url"]

MASK = "***"

# scheme://[user]:password@ with the password running to the last '@' before the
# host (an unescaped '@' inside it must not leave its tail visible). Any scheme:
# a mistyped one ("redsi://") carries the same secret.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s\"']*:)[^/\s\"']*@")


def redact_text(text: str) -> str:
    """The text with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('head')}{MASK}@", text)


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (the rest as given, even if malformed).

    A mistyped URL without ``://`` ("rediss//u:pw@host", "u:pw@host") still carries
    a secret: whatever stands between the user's ':' and the last '@' is hidden.
    """
    hidden = redact_text(url)
    if hidden != url or "@" not in url:
        return hidden
    head, _, host = url.rpartition("@")
    start = head.rfind("/") + 1  # userinfo begins after the last slash, if any
    user, colon, _ = head[start:].partition(":")
    if not colon:
        return url
    return f"{head[:start]}{user}:{MASK}@{host}"
