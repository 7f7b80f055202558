"""Settings parsing, identifiers, process facts and URL redaction."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from peers import constants as c
from peers import procinfo
from peers.config import default_url, load_settings, redact_url
from peers.errors import ConfigError
from peers.ids import new_message_id, new_peer_id
from peers.transports import SCHEMES, transport_class

CROCKFORD = set("0123456789abcdefghjkmnpqrstvwxyz")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PEERS_* variables and a private XDG_STATE_HOME."""
    for key in list(os.environ):
        if key.startswith("PEERS_"):
            monkeypatch.delenv(key)
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


# -- settings ------------------------------------------------------------------------


def test_default_url_is_under_xdg_state_home(clean_env: Path) -> None:
    expected = f"sqlite:///{clean_env / 'peers' / 'peers.db'}"
    assert default_url() == expected
    settings = load_settings()
    assert settings.url == expected
    assert settings.scheme == "sqlite"
    assert settings.namespace == c.DEFAULT_NAMESPACE


def test_default_url_without_xdg_uses_home(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert (
        load_settings().url == f"sqlite:///{tmp_path / '.local' / 'state' / 'peers' / 'peers.db'}"
    )


def test_env_overrides_with_prefix(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERS_URL", "redis://localhost:6380/2")
    monkeypatch.setenv("PEERS_NAMESPACE", "team-a")
    monkeypatch.setenv("PEERS_NAME", "reviewer")
    monkeypatch.setenv("PEERS_PEER_TTL", "7.5")
    settings = load_settings()
    assert settings.url == "redis://localhost:6380/2"
    assert settings.scheme == "redis"
    assert settings.namespace == "team-a"
    assert settings.name == "reviewer"
    assert settings.peer_ttl == 7.5


def test_keyword_overrides_beat_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERS_NAMESPACE", "from-env")
    assert load_settings(namespace="from-kw").namespace == "from-kw"


@pytest.mark.parametrize("namespace", ["Upper", "has space", "-leading", "", "x" * 65, "a/b"])
def test_invalid_namespace_is_config_error(clean_env: Path, namespace: str) -> None:
    with pytest.raises(ConfigError, match="PEERS_NAMESPACE"):
        load_settings(namespace=namespace)


def test_invalid_namespace_from_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERS_NAMESPACE", "Not Valid")
    with pytest.raises(ConfigError, match="PEERS_NAMESPACE"):
        load_settings()


@pytest.mark.parametrize("name", ["Bob", "bob smith", "_bob", "b" * 65, "bob!"])
def test_invalid_name_is_config_error(clean_env: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="PEERS_NAME"):
        load_settings(name=name)


def test_empty_name_means_anonymous(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERS_NAME", "")
    assert load_settings().name is None


@pytest.mark.parametrize("field", ["peer_ttl", "retention", "heartbeat_interval", "rate_limit"])
def test_non_positive_timings_are_config_errors(clean_env: Path, field: str) -> None:
    with pytest.raises(ConfigError, match=f"PEERS_{field.upper()}"):
        load_settings(**{field: 0})


def test_valid_names_pass(clean_env: Path) -> None:
    for name in ("a", "bob", "b0b_2-x", "9lives", "x" * 64):
        assert load_settings(name=name, namespace=name).name == name


# -- transport registry ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["mysql://localhost/db", "postgres://x", "/just/a/path"])
def test_unknown_scheme_lists_known_schemes(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        transport_class(url)
    text = str(info.value)
    for scheme in SCHEMES:
        assert f"{scheme}://" in text
    assert url in text


def test_misspelt_scheme_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match=r"did you mean sqlite://"):
        transport_class("sqlit:///tmp/x.db")


def test_sqlite_scheme_resolves_case_insensitively() -> None:
    cls = transport_class("SQLITE:///tmp/peers.db")
    assert cls.__name__ == "SQLiteTransport"


# -- ids ------------------------------------------------------------------------------


def test_message_ids_sortable_and_unique() -> None:
    generated = [new_message_id() for _ in range(10_000)]
    assert len(set(generated)) == len(generated)
    assert sorted(generated) == generated
    assert all(len(i) == 26 and set(i) <= CROCKFORD for i in generated)


def test_message_ids_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(new_message_id() for _ in range(2_500))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for out in results for i in out]
    assert len(set(flat)) == 10_000
    for out in results:
        assert sorted(out) == out  # still monotonic per thread


def test_message_ids_sort_by_time_across_processes() -> None:
    before = new_message_id()
    out = subprocess.run(
        [sys.executable, "-c", "from peers.ids import new_message_id; print(new_message_id())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    after = new_message_id()
    assert before < out < after


def test_peer_ids_match_name_pattern() -> None:
    generated = {new_peer_id() for _ in range(1_000)}
    assert len(generated) == 1_000
    for peer_id in generated:
        assert len(peer_id) == 10
        assert c.NAME_PATTERN.fullmatch(peer_id)
        assert set(peer_id) <= CROCKFORD


# -- procinfo ---------------------------------------------------------------------------


def test_own_process_is_alive_with_its_start_time() -> None:
    pid = os.getpid()
    start = procinfo.process_start_time(pid)
    if sys.platform.startswith("linux"):
        assert start is not None
    assert procinfo.process_alive(pid, start)
    assert procinfo.process_alive(pid, None)


def test_dead_pid_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = procinfo.process_start_time(proc.pid)
    proc.wait(timeout=30)
    assert not procinfo.process_alive(proc.pid, start)
    assert not procinfo.process_alive(proc.pid, None)


def test_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        start = procinfo.process_start_time(proc.pid)
        # Exited but not yet waited for: a zombie with a stat entry.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        if start is not None:
            assert not procinfo.process_alive(proc.pid, start)
    finally:
        proc.wait(timeout=30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times need /proc")
def test_mismatching_start_time_is_not_alive() -> None:
    pid = os.getpid()
    start = procinfo.process_start_time(pid)
    assert start is not None
    assert not procinfo.process_alive(pid, start + 1)


@pytest.mark.parametrize("pid", [0, -1])
def test_non_positive_pid_is_not_alive(pid: int) -> None:
    assert not procinfo.process_alive(pid, None)


def test_process_info_of_self() -> None:
    info = procinfo.process_info(os.getpid())
    assert info is not None
    assert info.pid == os.getpid()
    assert info.ppid == os.getppid()
    assert info.argv


# -- redact_url ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:p%40ss@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        (
            "sqlite:///home/me/.local/state/peers/peers.db",
            "sqlite:///home/me/.local/state/peers/peers.db",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redacted_url_never_contains_password() -> None:
    assert "hunter2" not in redact_url("redis://admin:hunter2@10.0.0.1:6379/0")


_PARSE_MANY = """
import gc, tracemalloc
from peers.models import Message
tracemalloc.start()
gc.collect()
before = tracemalloc.get_traced_memory()[0]
for i in range(20_000):
    Message.model_validate_json(
        b'{"id":"m%020d","namespace":"n","sender_id":"s%d","recipient_id":"r",'
        b'"body":"b%d","sent_at":1.0}' % (i, i, i)
    )
gc.collect()
print(tracemalloc.get_traced_memory()[0] - before)
"""


def test_records_read_from_json_keep_none_of_their_strings() -> None:
    """pydantic's JSON parser caches short strings process-wide (16,384 of them): the
    unique ids and bodies of messages read from Redis would stay in memory after a burst.
    (A fresh interpreter: the cache is shared by everything this one parsed.)"""
    out = subprocess.run(
        [sys.executable, "-c", _PARSE_MANY], capture_output=True, text=True, check=True, timeout=60
    )
    kept = int(out.stdout)
    assert kept < 100_000, f"{kept} bytes kept after reading 20,000 messages"
