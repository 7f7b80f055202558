"""The error hierarchy of peers.

Transports convert backend exceptions (sqlite3, redis) into these at their edge,
so the service, the MCP server and the CLI never import a backend library.
Every message says what was wrong and, where it helps, what is allowed.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousTarget",
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "InvalidInput",
    "MessageNotFound",
    "NameTaken",
    "NotPermitted",
    "PeerNotFound",
    "PeersError",
    "RateLimited",
    "StoreCorrupt",
]


class PeersError(Exception):
    """Base of every error peers raises on purpose.

    ``hint`` says what to do about it and ``allowed`` lists the values that would
    have been accepted (both optional): a tool result shows them to the model.
    """

    def __init__(
        self, *args: object, hint: str | None = None, allowed: list[str] | None = None
    ) -> None:
        super().__init__(*args)
        self.hint = hint
        self.allowed = allowed


class ConfigError(PeersError):
    """The configuration (environment, URL, client config file) is invalid."""


class InvalidInput(PeersError):
    """An argument broke a rule: size, characters, name pattern, scope."""


class PeerNotFound(PeersError):
    """No peer has this id or name (or it was reaped)."""


class MessageNotFound(PeersError):
    """No message with this id exists within the retention window."""


class AmbiguousTarget(PeersError):
    """A prefix matched several peers; the message lists them."""

    def __init__(self, target: str, candidates: list[str]) -> None:
        self.target = target
        self.candidates = candidates
        super().__init__(
            f"'{target}' matches {len(candidates)} peers: {', '.join(candidates)}; "
            "use a longer prefix, the full id or the exact name",
            hint="use the full id or the exact name of one of them",
            allowed=candidates,
        )


class NameTaken(PeersError):
    """Another live peer in the namespace holds this name."""


class RateLimited(PeersError):
    """The sender went over its message rate limit."""


class NotPermitted(PeersError):
    """The action is not allowed (another host, another user, oneself)."""


class BackendError(PeersError):
    """The store failed in a way that is not the caller's fault."""


class BackendUnavailable(BackendError):
    """The store cannot be reached right now (server down, file locked away)."""


class StoreCorrupt(BackendError):
    """The store holds data peers cannot read (corrupt file, newer schema)."""
