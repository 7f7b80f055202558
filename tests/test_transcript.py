"""The transcript reader, on files written in Claude Code 2.1.328's format (see peers.transcript).

The records below are those a real session wrote (ids and long fields shortened):
a channel message shown to an idle session, one shown mid-turn after a tool
result, the queue operations around them, and records that merely mention a
message id (a tool result quoting one, the API request log) and prove nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peers.transcript import Transcript, project_slug, transcript_path

SID = "4916eaa0-7dfb-434b-80a5-b4754f433155"


def tag(message_id: str, body: str = "hello", server: str = "peers", **meta: str) -> str:
    attrs = "".join(f' {k}="{v}"' for k, v in {"message_id": message_id, **meta}.items())
    return f'<channel source="{server}"{attrs}>\n{body}\n</channel>'


def idle_shown(message_id: str, server: str = "peers") -> dict[str, Any]:
    return {
        "parentUuid": "415ad09f", "isSidechain": False, "promptId": "e3dd111e", "type": "user",
        "message": {"role": "user", "content": tag(message_id, server=server)},
        "isMeta": True, "uuid": "2fb18b6f", "timestamp": "2026-12-01T10:51:54.412Z",
        "permissionMode": "auto", "origin": {"kind": "channel", "server": server},
        "promptSource": "system", "userType": "external", "entrypoint": "cli",
        "cwd": "/tmp/ccexp/proj", "sessionId": SID, "version": "2.1.328",
    }  # fmt: skip


def busy_shown(message_id: str) -> dict[str, Any]:
    return {
        "parentUuid": "433cd016", "isSidechain": False, "type": "attachment",
        "attachment": {
            "type": "queued_command", "prompt": tag(message_id, "during bash"),
            "source_uuid": "1e4121ed", "commandMode": "prompt",
            "origin": {"kind": "channel", "server": "peers"},
            "timestamp": "2026-12-01T10:52:15.215Z", "isMeta": True,
        },
        "uuid": "a8afa14d", "timestamp": "2026-12-01T10:52:15.215Z",
        "rendered": [{"content": "<system-reminder>\nA message arrived from peers while you "
                      "were working:\n" + tag(message_id, "during bash") + "\n</system-reminder>"}],
        "renderedRole": "system", "sessionId": SID,
    }  # fmt: skip


def enqueued(message_id: str) -> dict[str, Any]:
    return {"type": "queue-operation", "operation": "enqueue",
            "timestamp": "2026-12-01T10:52:15.215Z", "sessionId": SID,
            "content": tag(message_id)}  # fmt: skip


def write(path: Path, *records: dict[str, Any], tail: str = "") -> None:
    with path.open("a") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
        fh.write(tail)


def test_the_path_is_where_claude_code_keeps_it(tmp_path: Path) -> None:
    env = {"CLAUDE_CODE_SESSION_ID": SID, "HOME": str(tmp_path),
           "CLAUDE_PROJECT_DIR": "/tmp/ccexp/proj"}  # fmt: skip
    assert transcript_path(env, "/elsewhere") == (
        tmp_path / ".claude" / "projects" / "-tmp-ccexp-proj" / f"{SID}.jsonl"
    )
    env["CLAUDE_CONFIG_DIR"] = str(tmp_path / "cfg")
    assert transcript_path(env, "/x") == tmp_path / "cfg/projects/-tmp-ccexp-proj" / f"{SID}.jsonl"
    assert project_slug("/home/me/my_repo.v2") == "-home-me-my-repo-v2"
    assert transcript_path({"HOME": str(tmp_path)}, "/x") is None  # not a Claude Code session
    assert transcript_path({"CLAUDE_CODE_SESSION_ID": "../../etc"}, "/x") is None


def test_shown_and_received_messages_are_read_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("")
    transcript = Transcript(path, "peers")
    assert transcript.read()
    assert transcript.shown == set() and transcript.caught_up
    write(path, {"type": "mode", "mode": "normal", "sessionId": SID}, enqueued("m1"), idle_shown("m1"))
    assert transcript.read()
    assert transcript.shown == {"m1"} and transcript.received == {"m1"}
    write(path, enqueued("m2"))
    transcript.read()
    assert transcript.received == {"m1", "m2"} and transcript.shown == {"m1"}
    # A record still being written is taken once its line is complete.
    line = json.dumps(busy_shown("m2"))
    write(path, tail=line[:40])
    transcript.read()
    assert "m2" not in transcript.shown and not transcript.caught_up
    write(path, tail=line[40:] + "\n")
    transcript.read()
    assert transcript.shown == {"m1", "m2"} and transcript.caught_up


def test_mentions_of_a_message_id_prove_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    quoted = tag("m9")
    write(
        path,
        # A tool result that quotes a channel tag (a peer's body, a file the model read).
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "text", "text": quoted}]}]}},
        # The API request log holds the same text; it has no channel origin.
        {"type": "api-request-blob", "sessionId": SID,
         "message": {"role": "user", "content": [{"type": "text", "text": quoted}]}},
        # Another server's channel, and a user prompt typed by the user.
        idle_shown("m8", server="other"),
        {"type": "user", "message": {"role": "user", "content": quoted}},
        # A removal from the queue is no proof either.
        {"type": "queue-operation", "operation": "remove", "content": quoted},
    )  # fmt: skip
    transcript = Transcript(path, "peers")
    transcript.read()
    assert transcript.shown == set() and transcript.received == set()


def test_only_the_message_id_attribute_of_the_tag_counts(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    # Claude Code escapes quotes in attribute values: a summary cannot forge an id.
    record = idle_shown("real")
    record["message"]["content"] = tag(
        "real", "a body with message_id=\"forged\" in it",
        from_summary="see message_id=&quot;forged2&quot;",
    )
    write(path, record, {"not json": True}, tail="{garbage\n")
    transcript = Transcript(path, "peers")
    transcript.read()
    assert transcript.shown == {"real"}


def test_a_replaced_or_cut_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write(path, idle_shown("a"))
    transcript = Transcript(path, "peers")
    transcript.read()
    replacement = tmp_path / "new.jsonl"
    write(replacement, idle_shown("b"))
    replacement.replace(path)
    transcript.read()
    assert transcript.shown == {"a", "b"}
    path.write_text(json.dumps(enqueued("c")) + "\n")
    transcript.read()  # shorter than what was read: cut, read again
    assert transcript.received == {"c"}


def test_the_file_is_found_under_another_project_directory(tmp_path: Path) -> None:
    expected = tmp_path / "projects" / "-a-very-long-path" / f"{SID}.jsonl"
    actual = tmp_path / "projects" / "-a-very-long-pa-1x2y3z" / f"{SID}.jsonl"
    actual.parent.mkdir(parents=True)
    write(actual, idle_shown("m1"))
    transcript = Transcript(expected, "peers")
    assert transcript.read()
    assert transcript.shown == {"m1"}


def test_a_missing_file_is_not_an_error(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path / "projects" / "p" / f"{SID}.jsonl", "peers")
    assert not transcript.read()
    assert not transcript.written_since(0)


def test_the_newest_record_time_is_known_and_cannot_be_forged(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    forged = {"type": "user", "timestamp": "2026-12-01T10:00:00.000Z",
              "message": {"role": "user", "content": 'text "timestamp":"2099-01-01T00:00:00Z"'}}  # fmt: skip
    write(path, forged, enqueued("m1"))
    transcript = Transcript(path, "peers")
    assert transcript.latest_at is None
    assert transcript.read()
    # enqueued() is 10:52:15.215 UTC; the quoted text inside a string does not count.
    assert transcript.latest_at == pytest.approx(1796122335.215)
    assert transcript.recorded_since(1796122335.0)
    assert not transcript.recorded_since(1796122336.0)


def test_the_newest_time_comes_from_the_last_dated_record_of_a_read(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    older = {"type": "user", "timestamp": "2026-12-01T10:00:00.000Z",
             "message": {"role": "user", "content": "hi"}}  # fmt: skip
    write(path, older, enqueued("m1"), {"type": "summary", "summary": "no time of its own"})
    transcript = Transcript(path, "peers")
    assert transcript.read()
    assert transcript.received == {"m1"}
    assert transcript.latest_at == pytest.approx(1796122335.215)  # enqueued(), not the summary
    write(path, {"type": "summary", "summary": "still none"})
    assert transcript.read()
    assert transcript.latest_at == pytest.approx(1796122335.215)
    assert transcript.read() and transcript.caught_up  # nothing new: nothing changes


def test_ids_no_longer_waited_on_are_forgotten(tmp_path: Path) -> None:
    """A day of channel messages does not stay in memory: the reader keeps what it is told."""
    path = tmp_path / "t.jsonl"
    transcript = Transcript(path, "peers")
    write(path, *(r for i in range(500) for r in (enqueued(f"m{i}"), idle_shown(f"m{i}"))))
    transcript.read()
    assert len(transcript.shown) == len(transcript.received) == 500
    transcript.keep_only({"m7", "m9", "never-seen"})
    assert transcript.shown == transcript.received == {"m7", "m9"}
    write(path, enqueued("m600"))
    transcript.read()
    assert transcript.received == {"m7", "m9", "m600"}
    transcript.keep_only(set())
    assert transcript.shown == transcript.received == set()


def test_a_read_sets_aside_what_was_appended_not_the_cap(tmp_path: Path) -> None:
    """Read for every tool call while pushes wait: a buffer of the 8 MiB cap per read was
    a busy session's largest allocation, and its heap kept the mark."""
    import tracemalloc

    path = tmp_path / "t.jsonl"
    write(path, idle_shown("m1"))
    transcript = Transcript(path, "peers")
    tracemalloc.start()
    try:
        assert transcript.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert transcript.shown == {"m1"}
    assert peak < 256 * 1024
