"""Issue 10 "Done when" with the real CLIs: peers inside every agent's loop through hooks.

Each client is configured by the real ``peers install CLIENT`` (which writes the hooks
with the MCP entry once the product has them) and runs without any channel flag.
Codex skips untrusted hooks silently; these runs pass ``--dangerously-bypass-hook-trust``,
standing in for the user trusting them in the TUI's ``/hooks``.

Written against the behaviour the issue asks for; they fail on the code they were
written on (the report lists which, and why).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_drivers import Driver, Store
from clients_common import CLIENTS, send_then, times_seen
from fake_model import Call, FakeModel, ModelRequest, Say
from peer_session import PeerSession

pytestmark = pytest.mark.scenarios

# A harmless tool of each client's own (not a peers tool): the hook path, not the poll path.
NATIVE: dict[str, Callable[[Path], Call]] = {
    "claude": lambda cwd: Call("Read", {"file_path": str(cwd / "README.md")}),
    "codex": lambda cwd: Call("exec_command", {"cmd": "true"}),
    "gemini": lambda cwd: Call("list_directory", {"dir_path": str(cwd)}),
}


def _edit_call(client: str, cwd: Path, relpath: str, content: str) -> Call:
    """A new file written by the client's own edit tool."""
    if client == "claude":
        return Call("Write", {"file_path": str(cwd / relpath), "content": content})
    if client == "codex":
        added = "".join(f"+{line}\n" for line in content.splitlines())
        return Call(
            "apply_patch",
            {"input": f"*** Begin Patch\n*** Add File: {relpath}\n{added}*** End Patch\n"},
        )
    return Call("write_file", {"file_path": str(cwd / relpath), "content": content})


# How each client is told to let its edit tool run in print mode.
EDIT_ARGS = {
    "claude": ["--permission-mode", "acceptEdits"],
    "codex": [],
    "gemini": ["--approval-mode", "auto_edit"],
}


def _git_repo(path: Path) -> None:
    (path / "README.md").write_text("# a project\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "README.md"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "init"],
    ):
        subprocess.run(argv, cwd=path, check=True, capture_output=True)


def _driver(make_driver: Callable[..., Driver], client: str, **options: Any) -> Driver:
    driver = make_driver(client, entry="install", **options)
    if client == "codex":
        driver.overrides["model"] = "gpt-5.5"  # a model whose tools include apply_patch
    return driver


def _hook_args(client: str) -> list[str]:
    return ["--dangerously-bypass-hook-trust"] if client == "codex" else []


@pytest.fixture
def repo(work_dir: Path) -> Path:
    _git_repo(work_dir)
    return work_dir


@pytest.mark.parametrize("client", CLIENTS)
def test_a_message_sent_mid_turn_reaches_the_model_after_its_next_tool_call_once(
    client: str, make_driver: Callable[..., Driver], fake_model: FakeModel, store: Store, repo: Path
) -> None:
    driver = _driver(make_driver, client)
    body = f"mid-turn probe for {client}: I changed the API of users/route.ts"
    box: dict[str, Any] = {}
    fake_model.play(
        send_then(store, body, NATIVE[client](repo), box), Call("list_peers"), Say("done")
    )
    run = driver.run("Do your work.", *_hook_args(client))

    requests = fake_model.agent_requests()
    assert len(requests) == 3, run.describe()
    assert body in requests[1].context(), "not shown after the next tool call (the hook path)"
    assert times_seen(fake_model, body) == 1, "shown more than once (hook, then tool result?)"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_message_sent_before_a_prompt_reaches_the_model_with_it(
    client: str, make_driver: Callable[..., Driver], fake_model: FakeModel, store: Store, repo: Path
) -> None:
    name = f"{client}-before"
    driver = _driver(make_driver, client, server_env={"PEERS_NAME": name})
    # whoami answers once the session is registered: Claude Code may otherwise end
    # its print-mode run (and stop the server) before the name was ever recorded.
    fake_model.play(Call("whoami"), Say("ok"))
    driver.run("Hello.", *_hook_args(client))  # the name exists now; the session has left
    assert name in fake_model.agent_requests()[-1].context(), "whoami never answered with the name"
    body = f"before-prompt probe for {client}: main is frozen for the release"
    store.send(name, body)

    fake_model.play(Say("done"))
    run = driver.run("Carry on with the task.", *_hook_args(client))
    first = fake_model.agent_requests()[-1]
    assert body in first.context(), f"not shown with the prompt:\n{run.describe()}"
    assert first.context().count(body) == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_a_turn_ending_with_unread_mail_is_continued_once(
    client: str, make_driver: Callable[..., Driver], fake_model: FakeModel, store: Store, repo: Path
) -> None:
    driver = _driver(make_driver, client)
    body = f"stop probe for {client}: wait, the tests on main are red"
    box: dict[str, Any] = {}
    fake_model.play(send_then(store, body, Say("all done"), box), Say("done, having read it"))
    run = driver.run("Do your work.", *_hook_args(client))

    requests = fake_model.agent_requests()
    assert len(requests) == 2, f"expected one continuation:\n{run.describe()}"
    assert body in requests[1].context()
    assert times_seen(fake_model, body) == 1, requests[1].context()


@pytest.mark.parametrize("client", CLIENTS)
def test_an_edit_shows_up_in_another_sessions_list_peers_within_a_second(
    client: str,
    make_driver: Callable[..., Driver],
    fake_model: FakeModel,
    store: Store,
    repo: Path,
    tmp_path: Path,
) -> None:
    driver = _driver(make_driver, client)
    relpath = "src/edited_by_agent.py"
    seen: dict[str, Any] = {}
    with PeerSession(
        store.env, name="watcher", cwd=repo, errlog=tmp_path / "watcher.log"
    ) as watcher:

        def look(request: ModelRequest) -> Say:
            # The edit's result is back: within 1 s the other session must see the file.
            deadline = time.monotonic() + 1.0
            while True:
                peers = watcher.call_ok("list_peers", scope="repo")["peers"]
                files = [f for p in peers for f in p.get("files", [])]
                if any(f.endswith(relpath) for f in files) or time.monotonic() > deadline:
                    seen["files"] = files
                    return Say("done")
                time.sleep(0.05)

        fake_model.play(_edit_call(client, repo, relpath, "x = 1\n"), look)
        run = driver.run("Write the module.", *EDIT_ARGS[client], *_hook_args(client))
    assert (repo / relpath).exists(), run.describe()
    assert any(f.endswith(relpath) for f in seen.get("files", [])), seen


@pytest.mark.parametrize("client", CLIENTS)
def test_two_sessions_in_one_repository_each_get_only_their_own_mail(
    client: str, make_driver: Callable[..., Driver], store: Store, repo: Path
) -> None:
    fakes = [FakeModel().start(), FakeModel().start()]
    try:
        names = [f"{client}-one", f"{client}-two"]
        drivers = [
            _driver(make_driver, client, fake=fake, server_env={"PEERS_NAME": name})
            for fake, name in zip(fakes, names, strict=True)
        ]
        bodies = {name: f"only for {name}: take the {name} half" for name in names}
        sent = threading.Event()
        lock = threading.Lock()

        def both_live_then_native(request: ModelRequest) -> Call:
            with lock:
                if not sent.is_set():
                    deadline = time.monotonic() + 60
                    while {p.get("name") for p in store.peers()} < set(names):
                        assert time.monotonic() < deadline, store.peers()
                        time.sleep(0.1)
                    for name, body in bodies.items():
                        store.send(name, body)
                    sent.set()
            return NATIVE[client](repo)

        for fake in fakes:
            fake.play(both_live_then_native, Say("done"))
        running = [d.start("Do your half.", *_hook_args(client)) for d in drivers]
        runs = [r.wait() for r in running]
        for run, fake, name in zip(runs, fakes, names, strict=True):
            run.check()
            requests = fake.agent_requests()
            assert len(requests) == 2, run.describe()
            context = requests[1].context()
            other = next(n for n in names if n != name)
            assert bodies[name] in context, f"{name} did not get its mail:\n{run.describe()}"
            assert bodies[other] not in context, f"{name} was shown {other}'s mail"
    finally:
        for fake in fakes:
            fake.stop()
