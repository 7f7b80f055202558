"""`peers doctor` and `peers status` on hooks and delivery paths."""

from __future__ import annotations

import json
import time
from typing import Any

from cli_helpers import Cli
from install_helpers import USER_FILES, read

from peers.models import PushState, ReceiveMode


def install(cli: Cli, *args: str) -> None:
    """`peers install` without this test's store settings carried into the entry."""
    result = cli("install", *args, PEERS_URL="", PEERS_NAMESPACE="")
    assert result.exit_code == 0, result.output


def doctor(cli: Cli) -> list[dict[str, Any]]:
    result = cli("doctor", "--json")
    assert result.exit_code in (0, 1), result.output
    checks: list[dict[str, Any]] = json.loads(result.stdout)["checks"]
    return checks


def named(checks: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [c for c in checks if c["name"] == name]


def test_installed_hooks_are_reported_ok(cli: Cli) -> None:
    install(cli, "claude")
    [check] = named(doctor(cli), "claude hooks")
    assert check["status"] == "ok" and "5 of peers' hooks" in check["detail"]


def test_an_entry_without_hooks_is_a_warning(cli: Cli) -> None:
    install(cli, "gemini", "--no-hooks")
    [check] = named(doctor(cli), "gemini hooks")
    assert check["status"] == "warn" and "none of peers' hooks" in check["detail"]
    assert check["fix"] == "peers install gemini --scope user"


def test_a_hook_command_that_does_not_resolve_fails(cli: Cli) -> None:
    install(cli, "claude")
    path = cli.home / ".claude" / "settings.json"
    program = read(path)["hooks"]["Stop"][0]["hooks"][0]["command"].split()[0]
    path.write_text(path.read_text().replace(program, "/gone/bin/peers"))
    checks = named(doctor(cli), "claude hooks")
    [failure] = [c for c in checks if c["status"] == "fail"]
    assert "/gone/bin/peers" in failure["detail"] and "does not resolve" in failure["detail"]
    assert failure["fix"] == "peers install claude --scope user"


def test_missing_events_are_named(cli: Cli) -> None:
    install(cli, "claude")
    path = cli.home / ".claude" / "settings.json"
    doc = read(path)
    del doc["hooks"]["Stop"]
    path.write_text(json.dumps(doc))
    [check] = named(doctor(cli), "claude hooks")
    assert check["status"] == "warn" and "lack Stop" in check["detail"]


def test_untrusted_codex_hooks_are_a_warning_until_trusted(cli: Cli) -> None:
    install(cli, "codex")
    [check] = named(doctor(cli), "codex hooks")
    assert check["status"] == "warn"
    assert "untrusted" in check["detail"] and "skips untrusted hooks" in check["detail"]
    assert "/hooks" in check["fix"] and "--trust-hooks" in check["fix"]
    install(cli, "codex", "--trust-hooks")
    [check] = named(doctor(cli), "codex hooks")
    assert check["status"] == "ok" and "(trusted)" in check["detail"]
    # Changed after it was trusted: Codex calls it modified, and skips it.
    path = cli.home / ".codex" / "config.toml"
    path.write_text(path.read_text().replace("timeout = 5\n", "timeout = 6\n", 1))
    [check] = named(doctor(cli), "codex hooks")
    assert check["status"] == "warn" and "(modified)" in check["detail"]


def test_gemini_hooks_turned_off_are_a_warning(cli: Cli) -> None:
    install(cli, "gemini")
    path = cli.home / ".gemini" / "settings.json"
    doc = read(path)
    doc["hooksConfig"] = {"disabled": ["peers"]}
    path.write_text(json.dumps(doc))
    [check] = named(doctor(cli), "gemini hooks")
    assert check["status"] == "warn" and "/hooks enable peers" in check["detail"]


def test_hooks_without_an_entry_are_a_warning(cli: Cli) -> None:
    install(cli, "claude")
    (cli.home / USER_FILES["claude"][0]).unlink()
    [check] = named(doctor(cli), "claude hooks")
    assert check["status"] == "warn" and "no peers entry" in check["detail"]
    assert "peers uninstall claude" in check["fix"]


def test_a_malformed_hooks_file_fails(cli: Cli) -> None:
    install(cli, "claude")
    (cli.home / ".claude" / "settings.json").write_text("{nope")
    checks = named(doctor(cli), "claude hooks")
    assert any(c["status"] == "fail" and "not valid JSON" in c["detail"] for c in checks)


# -- delivery paths, per session ---------------------------------------------------------------


def register_three(cli: Cli) -> None:
    cli.register(name="pusher", client="claude-code", push=PushState.CONFIRMED)
    cli.register(
        name="hooked", client="codex", receive_mode=ReceiveMode.POLL, hooks_at=time.time() - 5
    )
    cli.register(name="poller", client="gemini", receive_mode=ReceiveMode.POLL)


def test_doctor_says_how_mail_reaches_each_session(cli: Cli) -> None:
    register_three(cli)
    checks = doctor(cli)
    [paths] = named(checks, "delivery paths")
    assert paths["status"] == "ok"
    detail = paths["detail"]
    assert "pusher" in detail and "push" in detail
    assert "hooked" in detail and "hooks" in detail
    assert "poller" in detail and "poll only" in detail
    [poll] = named(checks, "poll-mode sessions")
    assert poll["status"] == "warn" and "poller" in poll["detail"]
    assert "hooked" not in poll["detail"] and "pusher" not in poll["detail"]
    assert "peers install gemini" in poll["fix"]


def test_unconfirmed_push_without_hooks_is_a_warning(cli: Cli) -> None:
    cli.register(name="maybe", client="claude-code", push=PushState.UNCONFIRMED)
    [check] = named(doctor(cli), "unconfirmed push")
    assert check["status"] == "warn" and "maybe" in check["detail"]
    assert "peers install claude" in check["fix"]


def test_status_shows_the_delivery_paths(cli: Cli) -> None:
    register_three(cli)
    old = cli.register(
        name="idle", client="codex", receive_mode=ReceiveMode.POLL, hooks_at=time.time() - 7200
    )
    result = cli("status")
    assert result.exit_code == 0, result.output
    assert "DELIVERY" in result.stdout
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    assert "push" in rows["pusher"] and "hooks" in rows["hooked"]
    assert "poll only" in rows["poller"] and "hooks (last 2h ago)" in rows["idle"]
    doc = json.loads(cli("status", "--json").stdout)
    paths = {p["name"]: p["delivery_paths"] for p in doc["peers"]}
    assert paths == {
        "pusher": ["push"],
        "hooked": ["hooks"],
        "poller": ["poll only"],
        "idle": ["hooks (last 2h ago)"],
    }
    assert old.id in result.stdout


def test_an_untrusted_gemini_entry_is_a_warning(cli: Cli) -> None:
    install(cli, "gemini", "--no-trust")
    [check] = [c for c in doctor(cli) if c["name"].startswith("gemini user config")]
    assert check["status"] == "warn" and "hides the peers tools" in check["detail"]
    assert check["fix"] == "peers install gemini --scope user"


def test_hooks_moved_to_claudes_local_settings_still_count(cli: Cli) -> None:
    install(cli, "claude")
    moved = cli.cwd / ".claude" / "settings.local.json"
    moved.parent.mkdir()
    (cli.home / ".claude" / "settings.json").rename(moved)
    [check] = named(doctor(cli), "claude hooks")
    assert check["status"] == "ok" and "settings.local.json" in check["detail"]
