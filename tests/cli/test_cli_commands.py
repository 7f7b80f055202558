"""The operator commands through typer's runner, on a SQLite file and on the test redis-server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import HOST, Cli, arun
from typer.testing import Result

from peers import constants as c
from peers.cli import parse_since
from peers.ids import new_message_id
from peers.models import HistoryQuery, Message, ReceiveMode, SenderKind
from peers.transports import create_transport
from peers.transports.base import Transport


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("peers: ")
    return lines[0]


# -- status and list -----------------------------------------------------------------------


def test_status_shows_backend_counts_and_peers(any_cli: Cli) -> None:
    front = any_cli.register(name="frontend", summary="styling the login page")
    any_cli.register(client="codex", receive_mode=ReceiveMode.POLL)
    any_cli.with_transport(
        lambda t: t.send(
            Message(
                id=new_message_id(),
                namespace=any_cli.env["PEERS_NAMESPACE"],
                sender_id="someone",
                recipient_id=front.id,
                body="hi",
            )
        )
    )
    doc = as_json(any_cli("status", "--json"))
    assert doc["reachable"] is True
    assert doc["namespace"] == any_cli.env["PEERS_NAMESPACE"]
    assert doc["backend"] in ("sqlite", "redis")
    assert doc["latency_ms"] >= 0
    assert doc["live_peers"] == 2
    assert doc["unread"] == 1
    assert doc["error"] is None
    if doc["backend"] == "sqlite":
        assert doc["info"]["schema_version"] == str(c.SQLITE_SCHEMA_VERSION)
    else:
        assert doc["info"]["server_version"]
    [mine] = [p for p in doc["peers"] if p["id"] == front.id]
    assert mine["unread"] == 1
    assert mine["name"] == "frontend"

    text = any_cli("status")
    assert text.exit_code == 0, text.output
    assert "2 live, 1 unread" in text.stdout
    assert "frontend" in text.stdout and "styling the login page" in text.stdout


def test_status_hides_the_password(cli: Cli) -> None:
    result = cli("status", "--json", PEERS_URL="redis://user:hunter2@127.0.0.1:1/0")
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    doc = json.loads(result.stdout)
    assert doc["reachable"] is False
    assert doc["url"] == "redis://user:***@127.0.0.1:1/0"
    assert "127.0.0.1:1" in doc["error"]


def test_list_json_has_stable_keys(any_cli: Cli) -> None:
    peer = any_cli.register(
        name="backend", summary="fixing the api", branch="main", git_root="/r", files=("a.py",)
    )
    doc = as_json(any_cli("list", "--json"))
    assert doc["scope"] == "all"
    [item] = doc["peers"]
    assert set(item) == {
        "id", "name", "namespace", "host", "pid", "client", "receive_mode", "push", "hooks_at",
        "cwd", "repo", "git_root", "branch", "tty", "summary", "files", "registered_at",
        "last_seen", "online", "successor", "unread",
    }  # fmt: skip
    assert item["id"] == peer.id
    assert item["receive_mode"] == "push"
    assert item["repo"] == "/r"
    assert item["last_seen"].endswith("Z")

    text = any_cli("list")
    assert text.exit_code == 0
    header = text.stdout.splitlines()[0].split()
    assert header[:3] == ["NAME", "ID", "CLIENT"]
    assert "backend" in text.stdout and peer.id in text.stdout and "fixing the api" in text.stdout


def test_list_scopes(cli: Cli, tmp_path: Path) -> None:
    here = cli.register(name="here")
    cli.register(name="elsewhere", cwd=str(tmp_path))
    cli.register(name="remote", host="other-host")

    def names(scope: str) -> list[str]:
        return sorted(p["name"] for p in as_json(cli("list", "--json", "--scope", scope))["peers"])

    assert names("all") == ["elsewhere", "here", "remote"]
    assert names("machine") == ["elsewhere", "here"]
    assert names("directory") == [here.name]
    line = one_error_line(cli("list", "--scope", "galaxy"), 2)
    assert "unknown scope 'galaxy'" in line
    # Outside a git repository the repo scope says why it cannot work.
    assert "git" in one_error_line(cli("list", "--scope", "repo"), 2)


def test_list_repo_scope_from_a_worktree(cli: Cli, tmp_path: Path) -> None:
    repo = cli.cwd
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    cli.register(name="same-repo", cwd="/elsewhere", git_common_dir=common)
    cli.register(name="other-repo", cwd="/other", git_common_dir="/other/.git")
    doc = as_json(cli("list", "--json", "--scope", "repo"))
    assert [p["name"] for p in doc["peers"]] == ["same-repo"]


# -- send and broadcast --------------------------------------------------------------------


def test_send_reaches_the_mailbox_as_an_unverified_cli_sender(any_cli: Cli) -> None:
    peer = any_cli.register(name="reviewer")
    result = any_cli("send", "reviewer", "please review #12", "--json")
    doc = as_json(result)
    assert doc["delivery"] == "push"
    assert doc["recipient"]["id"] == peer.id
    assert doc["message"]["sender_kind"] == "cli"
    assert doc["message"]["verified"] is False
    [message] = any_cli.mailbox(peer.id)
    assert message.body == "please review #12"
    assert message.sender_kind is SenderKind.CLI
    assert message.sender_id.startswith("cli-")
    assert message.sender_name == "cli:tester"
    # A fresh sender id per command: nobody can reply to an earlier one by accident.
    as_json(any_cli("send", peer.id, "again", "--json"))
    first, second = any_cli.mailbox(peer.id)
    assert first.sender_id != second.sender_id
    text = any_cli("send", peer.id[:6], "by prefix")
    assert text.exit_code == 0
    assert f"to reviewer ({peer.id})" in text.stdout


def test_send_reads_the_message_from_stdin(cli: Cli) -> None:
    peer = cli.register(name="reader")
    result = cli("send", "reader", "-", input="line one\nline two\n")
    assert result.exit_code == 0, result.output
    [message] = cli.mailbox(peer.id)
    assert message.body == "line one\nline two"


def test_send_failures_are_one_line_each(any_cli: Cli) -> None:
    any_cli.register(name="alpha-one")
    any_cli.register(name="alpha-two")
    assert "no peer 'ghost'" in one_error_line(any_cli("send", "ghost", "hi"), 1)
    assert "matches 2 peers" in one_error_line(any_cli("send", "alpha", "hi"), 2)
    big = "x" * (32 * 1024 + 1)
    assert "limit" in one_error_line(any_cli("send", "alpha-one", big), 2)
    assert "empty" in one_error_line(any_cli("send", "alpha-one", "-", input="\n"), 2)
    assert "command-line sender" in one_error_line(any_cli("send", "cli-abcdef", "hi"), 1)


def test_send_to_an_offline_named_peer_is_queued(cli: Cli) -> None:
    peer = cli.register(name="later")
    cli.with_transport(lambda t: t.unregister(peer.id))
    doc = as_json(cli("send", "later", "for the next session", "--json"))
    assert doc["delivery"] == "queued"
    assert [m.body for m in cli.mailbox(peer.id)] == ["for the next session"]


def test_broadcast_reaches_every_peer_in_scope(any_cli: Cli) -> None:
    a = any_cli.register(name="a")
    b = any_cli.register(name="b", client="codex", receive_mode=ReceiveMode.POLL)
    far = any_cli.register(name="far", host="another-host")
    doc = as_json(any_cli("broadcast", "standup in 5", "--scope", "machine", "--json"))
    assert doc["scope"] == "machine"
    assert sorted(s["recipient"]["name"] for s in doc["sent"]) == ["a", "b"]
    for peer in (a, b):
        [m] = any_cli.mailbox(peer.id)
        assert m.broadcast and m.sender_kind is SenderKind.CLI
    assert any_cli.mailbox(far.id) == []
    everyone = any_cli("broadcast", "all hands", "--scope", "all")
    assert everyone.exit_code == 0
    assert len(everyone.stdout.splitlines()) == 3


def test_broadcast_needs_a_valid_scope(cli: Cli) -> None:
    missing = cli("broadcast", "hello")
    assert missing.exit_code == 2
    assert "--scope" in missing.output
    assert "unknown scope" in one_error_line(cli("broadcast", "hi", "--scope", "nearby"), 2)
    nobody = cli("broadcast", "hi", "--scope", "directory")
    assert nobody.exit_code == 0
    assert "nothing was sent" in nobody.stdout


# -- log --------------------------------------------------------------------------------------


def test_log_shows_history_with_delivery_state(any_cli: Cli) -> None:
    reader = any_cli.register(name="reader")
    other = any_cli.register(name="other")
    as_json(any_cli("send", "reader", "first", "--json"))
    as_json(any_cli("send", "reader", "second", "--json"))
    as_json(any_cli("send", "other", "elsewhere", "--json"))

    async def read_first(t: Transport) -> None:
        [first, *_] = await t.fetch(reader.id)
        await t.ack(reader.id, [first.id])

    any_cli.with_transport(read_first)
    doc = as_json(any_cli("log", "--json", "--peer", "reader"))
    assert doc["peer"] == reader.id
    states = [(m["body"], m["state"]) for m in doc["messages"]]
    assert states == [("first", "delivered"), ("second", "pending")]
    first = doc["messages"][0]
    assert first["acked_at"] is not None
    assert first["to_name"] == "reader" and first["to_id"] == reader.id
    assert first["sender_kind"] == "cli" and first["verified"] is False

    assert len(as_json(any_cli("log", "--json"))["messages"]) == 3
    newest = as_json(any_cli("log", "--json", "--limit", "1"))["messages"]
    assert [m["body"] for m in newest] == ["elsewhere"]
    assert as_json(any_cli("log", "--json", "--since", "1h"))["since"] is not None
    assert as_json(any_cli("log", "--json", "--peer", other.id[:5]))["peer"] == other.id

    text = any_cli("log")
    assert text.exit_code == 0
    assert "delivered" in text.stdout and "pending" in text.stdout
    assert "unverified" in text.stdout


def test_log_of_a_peer_that_is_gone(cli: Cli) -> None:
    peer = cli.register()
    as_json(cli("send", peer.id, "before it left", "--json"))
    cli.with_transport(lambda t: t.unregister(peer.id))
    doc = as_json(cli("log", "--json", "--peer", peer.id))
    assert [m["body"] for m in doc["messages"]] == ["before it left"]


def test_log_bad_arguments(cli: Cli) -> None:
    assert "--since" in one_error_line(cli("log", "--since", "yesterday-ish"), 2)
    assert cli("log", "--limit", "0").exit_code == 2
    assert "no peer" in one_error_line(cli("log", "--peer", "nobody"), 1)


def test_parse_since() -> None:
    assert parse_since("90s", now=1000.0) == 910.0
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("1w", now=0.0) == -604800.0
    assert parse_since("2026-01-01T00:00:00Z") == 1767225600.0


# -- gc ----------------------------------------------------------------------------------------


def test_gc_reports_what_it_removed(any_cli: Cli) -> None:
    gone = any_cli.register(name="gone")
    any_cli.with_transport(lambda t: t.unregister(gone.id))
    old = Message(
        id=new_message_id(),
        namespace=any_cli.env["PEERS_NAMESPACE"],
        sender_id="x",
        recipient_id=gone.id,
        body="old",
        sent_at=1.0,
    )
    any_cli.with_transport(lambda t: t.send(old))
    doc = as_json(any_cli("gc", "--json", PEERS_RETENTION="60"))
    assert set(doc) == {
        "peers_reaped", "peers_removed", "messages_removed", "wakeups_removed", "claims_removed"
    }
    assert doc["messages_removed"] == 1
    text = any_cli("gc")
    assert text.exit_code == 0
    assert "removed 0 expired peers, 0 expired messages" in text.stdout


def test_gc_reaps_peers_whose_process_is_gone(cli: Cli) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    cli.register(name="crashed", pid=proc.pid)
    proc.kill()
    proc.wait()
    doc = as_json(cli("gc", "--json"))
    assert doc["peers_reaped"] == 1


# -- doctor --------------------------------------------------------------------------------------


def checks_by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


def test_doctor_passes_on_a_healthy_store(any_cli: Cli) -> None:
    result = any_cli("doctor", "--json")
    doc = as_json(result)
    assert doc["ok"] is True
    assert set(doc["counts"]) == {"ok", "warn", "fail"}
    assert doc["counts"]["fail"] == 0
    for check in doc["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"}
        if check["status"] != "ok":
            assert check["fix"], check
    names = checks_by_name(doc)
    assert names["client entries"]["status"] == "warn"  # nothing installed yet
    if "sqlite" in any_cli.env["PEERS_URL"]:
        for name in ("sqlite integrity", "sqlite journal mode", "sqlite write lock", "sqlite path"):
            assert names[name]["status"] == "ok", names[name]
    else:
        assert names["redis permissions"]["status"] == "ok"
        assert names["redis server"]["status"] == "ok"
    text = any_cli("doctor")
    assert text.exit_code == 0
    assert "fix: peers install claude" in text.stdout


def test_doctor_checks_client_entries(cli: Cli) -> None:
    assert cli("install", "claude").exit_code == 0
    (cli.home / ".cursor").mkdir()
    (cli.home / ".cursor" / "mcp.json").write_text(
        json.dumps({"mcpServers": {"peers": {"command": "/nonexistent/peers", "args": ["serve"]}}})
    )
    claude = json.loads((cli.home / ".claude.json").read_text())
    claude["mcpServers"]["peers-team"] = dict(claude["mcpServers"]["peers"])
    (cli.home / ".claude.json").write_text(json.dumps(claude))
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    names = checks_by_name(doc)
    good = names["claude user config ~/.claude.json: peers"]
    assert good["status"] == "ok"
    assert "server:peers" in good["detail"]
    missing = names["cursor user config ~/.cursor/mcp.json: peers"]
    assert missing["status"] == "fail"
    assert missing["fix"] == "peers install cursor --scope user"
    renamed = names["claude user config ~/.claude.json: peers-team"]
    assert renamed["status"] == "fail"
    assert "server:peers" in renamed["detail"]
    assert renamed["fix"] == "peers install claude --scope user --name peers-team"


def test_doctor_reports_a_malformed_client_config(cli: Cli) -> None:
    (cli.home / ".gemini").mkdir()
    (cli.home / ".gemini" / "settings.json").write_text("{oops")
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    names = checks_by_name(json.loads(result.stdout))
    assert names["gemini config"]["status"] == "fail"
    assert "not valid JSON" in names["gemini config"]["detail"]


def test_doctor_finds_ghosts_backlog_and_poll_sessions(cli: Cli) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    cli.register(name="ghost", pid=proc.pid)
    proc.kill()
    proc.wait()
    busy = cli.register(name="busy", receive_mode=ReceiveMode.POLL, client="claude-code")

    async def flood(t: Transport) -> None:
        for i in range(25):
            await t.send(
                Message(
                    id=new_message_id(),
                    namespace=cli.env["PEERS_NAMESPACE"],
                    sender_id="x",
                    recipient_id=busy.id,
                    body=f"m{i}",
                )
            )

    cli.with_transport(flood)
    doc = as_json(cli("doctor", "--json"))
    names = checks_by_name(doc)
    assert names["ghost peers"]["status"] == "warn"
    assert "ghost" in names["ghost peers"]["detail"]
    assert names["unread backlog"]["status"] == "warn"
    assert "25 unread" in names["unread backlog"]["detail"]
    assert names["poll-mode sessions"]["status"] == "warn"
    assert "--dangerously-load-development-channels server:peers" in names["poll-mode sessions"]["fix"]


# -- the backend's failure modes ------------------------------------------------------------------


def test_unreachable_redis_is_one_line(cli: Cli) -> None:
    env = {"PEERS_URL": "redis://127.0.0.1:1/0"}
    for args in (["status"], ["list"], ["send", "x", "hi"], ["log"], ["gc"], ["tail"]):
        line = one_error_line(cli(*args, **env), 1)
        assert "127.0.0.1:1" in line, args
    doctor = cli("doctor", "--json", **env)
    assert doctor.exit_code == 1
    check = checks_by_name(json.loads(doctor.stdout))["backend connection"]
    assert check["status"] == "fail" and "127.0.0.1:1" in check["detail"] and check["fix"]


def test_corrupt_database(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not a database at all, just text " * 200)
    env = {"PEERS_URL": f"sqlite:///{db}"}
    assert "not a readable peers database" in one_error_line(cli("list", **env), 1)
    assert "not a readable peers database" in one_error_line(cli("status", **env), 1)
    doctor = cli("doctor", "--json", **env)
    assert doctor.exit_code == 1
    check = checks_by_name(json.loads(doctor.stdout))["backend connection"]
    assert check["status"] == "fail" and "move the database file away" in check["fix"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_database(cli: Cli, tmp_path: Path) -> None:
    store = tmp_path / "ro"
    store.mkdir()
    db = store / "peers.db"
    sqlite3.connect(db).close()
    db.chmod(0o400)
    store.chmod(0o500)
    try:
        line = one_error_line(cli("list", PEERS_URL=f"sqlite:///{db}"), 1)
        assert str(db) in line
    finally:
        store.chmod(0o700)


def test_unwritable_database_directory(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    line = one_error_line(cli("list", PEERS_URL=f"sqlite:///{blocker}/peers.db"), 1)
    assert "cannot create the SQLite database" in line


def test_bad_configuration_is_a_usage_error(cli: Cli) -> None:
    assert "did you mean" in one_error_line(cli("list", PEERS_URL="redsi://localhost"), 2)
    assert "PEERS_NAMESPACE" in one_error_line(cli("status", PEERS_NAMESPACE="Bad Name"), 2)
    assert "absolute path" in one_error_line(cli("list", PEERS_URL="sqlite:///"), 2)
    doctor = cli("doctor", "--json", PEERS_NAMESPACE="Bad Name")
    assert doctor.exit_code == 1
    assert checks_by_name(json.loads(doctor.stdout))["configuration"]["status"] == "fail"


def test_history_is_readable_by_another_instance(cli: Cli) -> None:
    """Regression guard: what `peers send` stores is what the transport's history returns."""
    peer = cli.register(name="h")
    as_json(cli("send", "h", "kept", "--json"))

    async def history() -> list[str]:
        async with create_transport(cli.settings(host=HOST)) as t:
            return [r.message.body for r in await t.history(HistoryQuery(peer_id=peer.id))]

    assert arun(history()) == ["kept"]


# -- Redis server settings that lose mail or deny commands -----------------------------------


def redis_cli(url: str, *args: str) -> Any:
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        client.close()


@pytest.mark.redis_real
def test_doctor_fails_on_an_evicting_redis(cli: Cli, redis_server: Any) -> None:
    if not redis_server.running:
        redis_server.start()
    url = redis_server.url
    redis_cli(url, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    try:
        result = cli("doctor", "--json", PEERS_URL=url)
    finally:
        redis_cli(url, "CONFIG", "SET", "maxmemory-policy", "noeviction")
    assert result.exit_code == 1
    check = checks_by_name(json.loads(result.stdout))["redis eviction policy"]
    assert check["status"] == "fail" and "allkeys-lru" in check["detail"] and check["fix"]


@pytest.mark.redis_real
def test_doctor_names_the_commands_an_acl_user_lacks(cli: Cli, redis_server: Any) -> None:
    if not redis_server.running:
        redis_server.start()
    user = f"doctor-{cli.env['PEERS_NAMESPACE']}"
    redis_cli(
        redis_server.url, "ACL", "SETUSER", user, "on", ">pw", "~peers:*", "&peers:*",
        "+@all", "-xtrim", "-subscribe",
    )  # fmt: skip
    try:
        url = redis_server.url.replace("redis://", f"redis://{user}:pw@")
        result = cli("doctor", "--json", PEERS_URL=url)
    finally:
        redis_cli(redis_server.url, "ACL", "DELUSER", user)
    assert result.exit_code == 1
    check = checks_by_name(json.loads(result.stdout))["redis permissions"]
    assert check["status"] == "fail"
    assert "XTRIM, SUBSCRIBE" in check["detail"]
    assert "+xtrim +subscribe" in check["fix"]
    assert "pw@" not in result.stdout
