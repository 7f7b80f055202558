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
SQLITE_SCHEMA_VERSION: Final = 2

# Redis stream consumer group that every mailbox carries.
REDIS_GROUP: Final = "peers"
REDIS_EVENT_LOG_MAXLEN: Final = 10_000
REDIS_BLOCK_MS: Final = 5_000
# A transport call that has not finished in this long means a dead server (scripts
# are short). Enforced per call, not as redis-py's socket_timeout: that one wraps
# every command's write in a new task (asyncio.wait_for), a quarter of a send's CPU.
REDIS_OP_TIMEOUT: Final = 10.0
# gc walks every mailbox of the namespace: it gets this many times as long.
REDIS_GC_DEADLINE_FACTOR: Final = 12
# The blocking connection's socket timeout on top of the block time.
REDIS_SOCKET_TIMEOUT: Final = 10.0
REDIS_CONNECT_TIMEOUT: Final = 5.0
# Retries on connection errors, with exponential backoff: 0.1, 0.2, 0.4, 0.8 s.
REDIS_RETRIES: Final = 4
REDIS_BACKOFF_BASE: Final = 0.05
REDIS_BACKOFF_CAP: Final = 1.0
REDIS_HEALTH_CHECK_INTERVAL: Final = 30
# A pub/sub connection silent this long gets a PING; without an answer within
# REDIS_SOCKET_TIMEOUT it is dropped and re-established (a half-open TCP link
# otherwise looks like a quiet one forever).
REDIS_PUBSUB_QUIET: Final = 30.0
# A doorbell ring suppresses further rings for the same recipient until it fetches,
# or at most this long (so that one lost ring delays push by no more than this).
REDIS_RING_TTL_MS: Final = 1_000
# Sends queued while one is in flight go out together in one script call, this many at most.
REDIS_SEND_BATCH: Final = 64
# How long a sender reuses whom a target (an id, a name, a prefix) named: a busy sender
# then skips a store read per message. Liveness is asked each time; the transport
# follows successors itself.
RECIPIENT_CACHE_SECONDS: Final = 1.0
# How far sends and lookups follow successor pointers (a name changing hands this often is a bug).
MAX_SUCCESSOR_HOPS: Final = 32
# Look-then-claim rounds a registration may lose to concurrent claims before giving up.
REDIS_CLAIM_ATTEMPTS: Final = 10

SERVER_NAME: Final = "peers"
