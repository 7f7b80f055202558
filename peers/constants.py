"""Every default, limit and timing constant in one place."""

from __future__ import annotations

import re
from typing import Final

NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Ids of command-line senders start with this; no session may take a name that does,
# so that such a from_id always means "typed on the command line, cannot be answered".
RESERVED_NAME_PREFIX: Final = "cli-"
NAME_RULE: Final = "1-64 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit"
RESERVED_NAME_RULE: Final = "names starting with 'cli-' are reserved for command-line senders"

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
# Unread mail a mailbox holds at most (PEERS_MAX_UNREAD): past it the oldest expire,
# with an event, and history shows them as expired.
MAX_UNREAD: Final = 10_000

# Upkeep (gc) in the background of a live `peers serve`: one per store at a time,
# holding a lease this long, renewed every interval.
UPKEEP_INTERVAL: Final = 300.0
UPKEEP_LEASE: Final = "gc"
UPKEEP_LEASE_TTL: Final = 2.5 * UPKEEP_INTERVAL
# After an unexpected error, upkeep tries again this soon rather than a whole interval later.
UPKEEP_RETRY: Final = 30.0
# The first round waits this long after start: a session starting up has other work.
UPKEEP_START_DELAY: Final = 10.0
# On shutdown, giving the lease back may take this long at most (then it just expires).
UPKEEP_RELEASE_TIMEOUT: Final = 1.0
# gc deletes at most this many rows per transaction (SQLite) or entries per script call
# (Redis), so other writers never wait long behind it.
GC_PAGE: Final = 500

# SQLite wake-ups where Unix datagram sockets are missing or refused (PEERS_WAKEUP=poll
# forces it): a waiting peer re-reads its mailbox this often.
WAKEUP_POLL_INTERVAL: Final = 0.25

# Pushed messages stay unread until shown, oldest first in the mailbox: a tool result's
# fetch reaches past them to the new ones, up to this many messages in all (the push
# loop's reaches past every push, or newer mail would never be pushed).
MAX_FETCH_WINDOW: Final = 2_000
# The push loop's reads leave out what it pushed already (the store skips those ids);
# at most this often it reads past them all instead, to learn which pushes left the
# mailbox (expired, or moved to the session that took this name).
PUSH_FULL_READ_EVERY: Final = 1.0
# Message bodies one tool result carries at most (the first message always whole); the
# rest stay unread, and the result says how many wait.
MAX_RESULT_MAIL_BYTES: Final = 64 * 1024

# Delivery proof through Claude Code's session transcript (see peers/transcript.py).
# While pushed messages wait for proof, the transcript is read this often.
TRANSCRIPT_POLL: Final = 0.25
# A transcript written this long after a push, with no record of it, proves the
# channel dropped it (Claude Code writes the transcript every ~100 ms).
PUSH_DROP_MARGIN: Final = 1.5
# ... and a record Claude Code created this long after a push, with no record of it, too
# (it records a channel message the moment it receives it).
PUSH_RECORD_MARGIN: Final = 0.25
# ... and so is a tool call sent that long after a push when, this long after the call,
# the transcript still holds no record of the push (Claude Code writes it every ~100 ms).
TRANSCRIPT_FLUSH: Final = 0.3
# A tool call waits at most this long for the transcript to catch up on a push
# before it carries the message itself.
TRANSCRIPT_GRACE: Final = 0.5
# ... reading it again this often meanwhile.
TRANSCRIPT_SETTLE_POLL: Final = 0.02

# wait_for_messages: how long it waits when not told, the most it waits (a longer
# timeout_s is cut to this, and the result says so), and how often it reports progress
# to a client that asked for it (a progressToken), so that a client's tool timeout
# that progress resets does not end the call.
WAIT_DEFAULT_TIMEOUT: Final = 60.0
WAIT_MAX_TIMEOUT: Final = 600.0
WAIT_PROGRESS_EVERY: Final = 5.0
# The senders a wait's result names beside the count of other unread mail.
WAIT_OTHER_SENDERS_SHOWN: Final = 5

# An identical send_message from the same session to the same peer within this many
# seconds is a retry (the first call was cancelled or timed out after it landed):
# it returns the first result, marked as a repeat, instead of sending a second copy.
SEND_REPEAT_WINDOW: Final = 60.0
# A background loop of a session that failed unexpectedly restarts after this long
# (doubling up to the cap while it keeps failing).
LOOP_RESTART_DELAY: Final = 0.5
LOOP_RESTART_CAP: Final = 30.0
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
SQLITE_SCHEMA_VERSION: Final = 4

# Redis stream consumer group that every mailbox carries.
REDIS_GROUP: Final = "peers"
REDIS_EVENT_LOG_MAXLEN: Final = 10_000
# The layout of a namespace's keys; an older one is migrated at connect (migrate.lua).
REDIS_LAYOUT_VERSION: Final = 2
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
# A background loop (doorbell, events, wake-ups) that failed unexpectedly waits this
# long before it goes on (doubling up to the cap), so a persistent fault does not spin.
LOOP_RETRY_BASE: Final = 0.1
LOOP_RETRY_CAP: Final = 5.0
# Look-then-claim rounds a registration may lose to concurrent claims before giving up.
REDIS_CLAIM_ATTEMPTS: Final = 10

# File claims (issue 11): how long one lasts unless renewed, the longest one can be
# asked for, how many a session holds, the paths one call names, the reason's length.
CLAIM_TTL: Final = 3600.0
CLAIM_TTL_MIN: Final = 10.0
CLAIM_TTL_MAX: Final = 24 * 3600.0
MAX_CLAIMS: Final = 200
MAX_CLAIM_PATHS: Final = 50
MAX_CLAIM_REASON: Final = 200
# A versioned Redis claim write that lost to a concurrent one reads again, this often at most.
REDIS_CLAIM_RETRIES: Final = 50
# The edit guard warns once per session about another session's uncommitted changes in
# a file; it remembers this many such warnings.
GUARD_WARNED_MEMORY: Final = 1_000

SERVER_NAME: Final = "peers"
# Claude Code's channel notification: what a push is written as (CLIENTS.md).
CHANNEL_METHOD: Final = "notifications/claude/channel"
# `peers serve` reads ahead at most this many of a client's requests (peers/admission.py),
# a request waits at most this long for room, and one open this long (far past any
# tool's deadline) takes none. 16 is as fast as 32 in the serve benchmark (8 is not) and
# leaves a busy session about 1.5 MB smaller: the allocator keeps what a burst's peak took.
SERVE_READ_AHEAD: Final = 16
SERVE_ADMIT_PATIENCE: Final = 1.0
SERVE_ADMIT_STALE: Final = 300.0

# A hook that reached its session's server within this long counts as a live path
# (`peers status`, `peers doctor`); older, the session shows when it last did.
HOOKS_RECENT: Final = 600.0
# A session stores that its hooks reach it (Peer.hooks_at) at most this often.
HOOKS_SEEN_SAVE_EVERY: Final = 15.0

# `peers watch`: the slow re-read for what no event announces (ages, silent deaths,
# mail read), the shortest time between two reads however busy the store, the
# reconnect backoff, and how long a stream or transport may take to wind down.
WATCH_REFRESH: Final = 5.0
WATCH_MIN_INTERVAL: Final = 0.1
WATCH_RETRY_MIN: Final = 1.0
WATCH_RETRY_MAX: Final = 5.0
WATCH_GRACE: Final = 3.0
