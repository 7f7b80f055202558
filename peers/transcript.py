"""Claude Code's session transcript, read for proof that a channel message reached the model.

A ``notifications/claude/channel`` is never acknowledged: Claude Code drops it
silently when its channel gate is off, and ``claude -p`` ignores the channel
flag (CLIENTS.md). What it does record, in the session's transcript, is each
channel message it showed the model. So a pushed message stays pending until
the transcript shows it, and this module reads that proof.

Where it is: ``<config dir>/projects/<project slug>/<session id>.jsonl``, the
config dir being ``$CLAUDE_CONFIG_DIR`` or ``~/.claude``, the slug the project
directory with every character other than ``[A-Za-z0-9]`` replaced by ``-``
(cut at 200 characters plus a hash when longer, which is why the file is also
looked for under every project directory), the session id the server's
``CLAUDE_CODE_SESSION_ID``. It appears with the session's first record.

The format relied on (Claude Code 2.1.328, measured with a real session): one
JSON object per line, appended in batches about every 100 ms. A channel
message appears in it as ``<channel source="SERVER" key="value" ...>`` text,
where SERVER is the name the server was registered under and the attributes
are the notification's ``meta`` with ``"`` and ``'`` escaped (``&quot;``), so an
attribute ``message_id="..."`` inside the opening tag is one peers wrote; the
body cannot open or close a ``<channel`` tag (Claude Code escapes both). It is
in three kinds of record:

- shown to the model, the session being idle (the message starts a turn)::

    {"type": "user", "origin": {"kind": "channel", "server": "peers"},
     "message": {"role": "user", "content": "<channel source=\\"peers\\" ...>..."}, ...}

- shown to the model after the current tool result (it arrived mid-turn)::

    {"type": "attachment", "attachment": {"type": "queued_command",
     "origin": {"kind": "channel", "server": "peers"}, "prompt": "<channel ...>..."}, ...}

- received, not yet shown (written at once, whether the session is idle or busy)::

    {"type": "queue-operation", "operation": "enqueue", "content": "<channel ...>..."}

A message the gate dropped leaves no record at all, while the file goes on
being written (the user's prompts, tool calls): a transcript written to well
after a push that holds no record of it is the proof of a drop.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["Transcript", "project_slug", "transcript_path"]

_OPEN_TAG = re.compile(r'<channel source="([^"]*)"([^>]*)>')
# A record's creation time (and those of objects inside it); a quote inside a JSON string
# is escaped, so text the model or a tool wrote cannot forge one.
_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*"([0-9T:.+\-]+Z?)"')
_MESSAGE_ID = re.compile(r'(?:^|\s)message_id="([^"]*)"')
# A single read takes at most this much of a fast-growing file; the rest comes next time.
_MAX_READ = 8 * 1024 * 1024
# Looking for the file under every project directory is done at most this often.
_SEARCH_EVERY = 2.0


def project_slug(project_dir: str) -> str:
    """Claude Code's directory name for a project (long ones also get a hash, see above)."""
    return re.sub(r"[^a-zA-Z0-9]", "-", project_dir)


def _config_dir(env: Mapping[str, str]) -> Path:
    configured = env.get("CLAUDE_CONFIG_DIR")
    return Path(configured) if configured else Path(env.get("HOME") or Path.home()) / ".claude"


def transcript_path(env: Mapping[str, str], cwd: str) -> Path | None:
    """Where the transcript of the Claude Code session that started this server is (or will be)."""
    session_id = env.get("CLAUDE_CODE_SESSION_ID")
    if not session_id or "/" in session_id or session_id.startswith("."):
        return None
    project = env.get("CLAUDE_PROJECT_DIR") or cwd
    return _config_dir(env) / "projects" / project_slug(project) / f"{session_id}.jsonl"


def _texts(record: Mapping[str, Any], server: str) -> Iterator[tuple[str, str]]:
    """``(kind, text)`` of the channel text a record holds: kind ``shown`` or ``received``."""
    kind = record.get("type")
    if kind == "user":
        origin = record.get("origin")
        if not (isinstance(origin, dict) and origin.get("kind") == "channel"):
            return
        if origin.get("server") != server:
            return
        message = record.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            yield "shown", content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield "shown", part["text"]
    elif kind == "attachment":
        attachment = record.get("attachment")
        if not isinstance(attachment, dict) or attachment.get("type") != "queued_command":
            return
        origin = attachment.get("origin")
        if not (isinstance(origin, dict) and origin.get("kind") == "channel"):
            return
        if origin.get("server") == server and isinstance(attachment.get("prompt"), str):
            yield "shown", attachment["prompt"]
    elif (
        kind == "queue-operation"
        and record.get("operation") == "enqueue"
        and isinstance(record.get("content"), str)
    ):
        yield "received", record["content"]


def _message_ids(text: str, server: str) -> Iterator[str]:
    for tag in _OPEN_TAG.finditer(text):
        if tag.group(1) != server:
            continue
        found = _MESSAGE_ID.search(tag.group(2))
        if found:
            yield found.group(1)


class Transcript:
    """An incremental reader of one session's transcript: which message ids it shows.

    :meth:`read` takes only what was appended since the last call (whole lines;
    a line still being written is read next time). ``shown`` and ``received``
    grow with each read until :meth:`keep_only` narrows them to the ids the
    reader still waits on (a day's channel messages would otherwise all stay in
    memory); ``written_at`` is when the file last changed, as of the last read, and
    ``latest_at`` the newest creation time of a record read so far (records carry one).
    """

    def __init__(self, path: Path, server: str) -> None:
        self.expected = path
        self.path: Path | None = None
        self.server = server
        self.shown: set[str] = set()
        self.received: set[str] = set()
        self.written_at: float | None = None
        self.latest_at: float | None = None
        # False while a fast-growing file has more than one read behind.
        self.caught_up = False
        self._offset = 0
        self._inode: int | None = None
        self._searched_at = -_SEARCH_EVERY

    @classmethod
    def of_session(
        cls, server: str, cwd: str, env: Mapping[str, str] | None = None
    ) -> Transcript | None:
        """The transcript of this server's Claude Code session, or None outside one."""
        path = transcript_path(os.environ if env is None else env, cwd)
        return cls(path, server) if path is not None else None

    def _locate(self) -> Path | None:
        if self.path is not None:
            return self.path
        if self.expected.exists():
            self.path = self.expected
        elif time.monotonic() - self._searched_at >= _SEARCH_EVERY:
            self._searched_at = time.monotonic()
            projects = self.expected.parent.parent
            try:
                found = next(projects.glob(f"*/{self.expected.name}"), None)
            except OSError:
                found = None
            self.path = found
        return self.path

    def read(self) -> bool:
        """Take in what was appended; True if the file could be read."""
        path = self._locate()
        if path is None:
            return False
        try:
            # Read for every tool call while pushes wait: one stat when nothing was added.
            st = os.stat(path)
            if st.st_ino == self._inode and st.st_size == self._offset:
                self.written_at = st.st_mtime
                self.caught_up = True
                return True
            with path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_ino != self._inode or st.st_size < self._offset:
                    # Replaced or cut: read it again from the start (ids only grow).
                    self._inode, self._offset = st.st_ino, 0
                self.written_at = st.st_mtime
                if st.st_size == self._offset:
                    self.caught_up = True
                    return True
                fh.seek(self._offset)
                # What was appended, not a buffer of the cap: read(n) sets n bytes aside.
                chunk = fh.read(min(_MAX_READ, st.st_size - self._offset))
        except OSError:
            return False
        end = chunk.rfind(b"\n") + 1
        if end == 0 and len(chunk) < _MAX_READ:
            self.caught_up = False  # only a partial line so far: its end comes next time
            return True
        if end == 0:
            end = len(chunk)  # one line longer than a read: skip past it
        self._offset += end
        self.caught_up = self._offset >= st.st_size
        lines = chunk[:end].splitlines()
        # Records are appended in creation order: the last dated one is the newest.
        for line in reversed(lines):
            if self._note_time(line):
                break
        for line in lines:
            # Only records that name a channel message are parsed (tool results can be huge).
            if b"message_id=" in line and b"channel" in line:
                self._take(line)
        return True

    def _note_time(self, line: bytes) -> bool:
        """Take in the newest creation time in ``line``; False if it holds none."""
        dated = False
        for raw in _TIMESTAMP.findall(line):
            try:
                at = datetime.fromisoformat(raw.decode().replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            dated = True
            if self.latest_at is None or at > self.latest_at:
                self.latest_at = at
        return dated

    def _take(self, line: bytes) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        for kind, text in _texts(record, self.server):
            target = self.shown if kind == "shown" else self.received
            target.update(_message_ids(text, self.server))

    @property
    def held(self) -> int:
        """How many ids the reader holds now."""
        return len(self.shown) + len(self.received)

    def keep_only(self, wanted: Collection[str]) -> None:
        """Forget every id read so far but those in ``wanted``."""
        # New sets, not in-place removal: a set never shrinks its table.
        self.shown = {i for i in wanted if i in self.shown}
        self.received = {i for i in wanted if i in self.received}

    def recorded_since(self, ts: float) -> bool:
        """True if a record read so far was created at or after ``ts`` (records are appended
        in creation order, so every record created before it has been read too)."""
        return self.latest_at is not None and self.latest_at >= ts

    def written_since(self, ts: float) -> bool:
        """True if, as of the last read (which took in the whole file), it was written at or
        after ``ts``."""
        return self.caught_up and self.written_at is not None and self.written_at >= ts
