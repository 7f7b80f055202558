"""Every default, limit and timing constant in one place."""

from __future__ import annotations

import re
from typing import Final

NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
NAME_RULE: Final = "1-64 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit"

DEFAULT_NAMESPACE: Final = "default"
MAX_MESSAGE_BYTES: Final = 32 * 1024
MAX_SUMMARY_BYTES: Final = 1024
MAX_FILES: Final = 50
RATE_LIMIT_PER_MINUTE: Final = 60

HEARTBEAT_INTERVAL: Final = 5.0
PEER_TTL: Final = 20.0
RETENTION_SECONDS: Final = 7 * 24 * 3600.0
# The slow re-read that turns a missed wake-up into a delay, never a loss.
SAFETY_RECHECK: Final = 5.0
FILES_REFRESH_INTERVAL: Final = 30.0

FETCH_LIMIT: Final = 100
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
SQLITE_SCHEMA_VERSION: Final = 1

# Redis stream consumer group that every mailbox carries.
REDIS_GROUP: Final = "peers"
REDIS_EVENT_LOG_MAXLEN: Final = 10_000
REDIS_BLOCK_MS: Final = 5_000

SERVER_NAME: Final = "peers"
