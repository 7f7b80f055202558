"""Settings, read once from the environment (prefix ``PEERS_``)."""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from peers import constants as c
from peers.errors import ConfigError
from peers.redact import redact_url

__all__ = ["PushMode", "Settings", "WakeupMode", "default_url", "load_settings", "redact_url", "state_dir"]


class WakeupMode(StrEnum):
    """How a SQLite peer learns of new mail: Unix datagram sockets, or re-reads."""

    # Sockets where they work, re-reads where they are missing or refused.
    AUTO = "auto"
    POLL = "poll"


class PushMode(StrEnum):
    AUTO = "auto"
    CHANNEL = "channel"
    OFF = "off"


def state_dir() -> Path:
    """The user's state directory for peers (XDG_STATE_HOME aware)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "peers"


def default_url() -> str:
    return f"sqlite:///{state_dir() / 'peers.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PEERS_", extra="ignore")

    url: str = Field(default_factory=default_url)
    namespace: str = c.DEFAULT_NAMESPACE
    name: str | None = None
    # Host identity: the hostname unless overridden (containers, tests).
    host: str = Field(default_factory=socket.gethostname)
    client: str | None = None
    push: PushMode = PushMode.AUTO
    # kill_peer in `peers serve`: off unless the user turns it on, so that no message
    # from another agent can talk a model into ending sessions (`peers kill` stays).
    allow_kill: bool = False
    # The key under which the client registered this MCP server (the channel flag names it).
    server_name: str = c.SERVER_NAME

    log_level: str = "info"
    log_format: Literal["console", "json"] = "console"

    max_message_bytes: int = Field(default=c.MAX_MESSAGE_BYTES, gt=0)
    max_summary_bytes: int = Field(default=c.MAX_SUMMARY_BYTES, gt=0)
    rate_limit: int = Field(default=c.RATE_LIMIT_PER_MINUTE, gt=0, description="messages a minute")
    heartbeat_interval: float = Field(default=c.HEARTBEAT_INTERVAL, gt=0)
    peer_ttl: float = Field(default=c.PEER_TTL, gt=0)
    retention: float = Field(default=c.RETENTION_SECONDS, gt=0)
    safety_recheck: float = Field(default=c.SAFETY_RECHECK, gt=0)
    files_refresh: float = Field(default=c.FILES_REFRESH_INTERVAL, gt=0)
    max_unread: int = Field(default=c.MAX_UNREAD, gt=0, description="unread mail per mailbox")
    # wait_for_messages reports progress this often to a client that asked for it.
    wait_progress_every: float = Field(default=c.WAIT_PROGRESS_EVERY, gt=0)
    wakeup: WakeupMode = WakeupMode.AUTO

    # TLS for rediss:// (see README, "Redis mode").
    redis_ca_file: str | None = None
    redis_ca_path: str | None = None
    redis_cert_file: str | None = None
    redis_key_file: str | None = None
    redis_verify: bool = True

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not c.NAME_PATTERN.fullmatch(value):
            raise ValueError(f"PEERS_NAMESPACE must be {c.NAME_RULE}")
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not c.NAME_PATTERN.fullmatch(value):
            raise ValueError(f"PEERS_NAME must be {c.NAME_RULE}")
        if value.startswith(c.RESERVED_NAME_PREFIX):
            raise ValueError(f"PEERS_NAME {value!r} is not allowed: {c.RESERVED_NAME_RULE}")
        return value

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"PEERS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
