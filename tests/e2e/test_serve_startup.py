"""peers serve's start: the handshake front answers what the SDK would, then the SDK serves.

The front (peers/front.py) answers ``server/discover`` and ``initialize`` while the
SDK loads. These tests hold its answers to the SDK's own for the same requests,
and check on real processes that every request, sent before or after the SDK is
ready, is answered exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import mcp_types.version
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp.server.connection import Connection
from mcp.server.runner import serve_connection
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage
from wire import RawServe, initialize, request

from peers import front
from peers.config import Settings
from peers.mcpclient import serve_command
from peers.serve import build_server
from peers.server import PeersServer

pytestmark = pytest.mark.anyio

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
DISCOVER = request(0, "server/discover", {})


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


async def sdk_answers(lines: list[bytes], expected: int) -> list[dict[str, Any]]:
    """What peers serve's SDK server writes back for these lines, wired as serve.py wires it."""
    handlers = PeersServer(Settings.model_construct())
    server, init_options = build_server(handlers)
    in_send, in_recv = anyio.create_memory_object_stream[SessionMessage | Exception](len(lines))
    out_send, out_recv = anyio.create_memory_object_stream[SessionMessage](expected + 1)
    dispatcher = JSONRPCDispatcher(in_recv, out_send, inline_methods=frozenset({"initialize"}))
    conn = Connection.for_loop(dispatcher)
    for raw in lines:
        # Parsed as the SDK's stdin reader parses each line.
        try:
            parsed = mcp_types.jsonrpc_message_adapter.validate_json(raw, by_name=False)
            in_send.send_nowait(SessionMessage(parsed))
        except ValueError as exc:
            in_send.send_nowait(exc)
    answers: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg, server.lifespan(server) as state:
            tg.start_soon(
                lambda: serve_connection(
                    server, dispatcher, connection=conn, lifespan_state=state,
                    init_options=init_options,
                )
            )  # fmt: skip
            for _ in range(expected):
                item = await out_recv.receive()
                answers.append(
                    item.message.model_dump(by_alias=True, mode="json", exclude_unset=True)
                )
            in_send.close()
    return answers


# -- the front's answers against the SDK's, in process -----------------------------

REVISIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "2026-07-28", "2099-01-01"]
CLIENT_SHAPES: list[dict[str, Any]] = [
    {},  # what Codex 0.169 and Gemini CLI 0.61 send, as far as peers is concerned
    {"roots": {}, "elicitation": {}},  # Claude Code 2.1
    {"roots": {"listChanged": True}, "sampling": {}, "experimental": {"claude/channel": {}}},
    {"elicitation": {"form": {}, "url": {}}, "sampling": {"context": {}, "tools": {}}},
]


@pytest.mark.parametrize("version", REVISIONS)
@pytest.mark.parametrize("capabilities", CLIENT_SHAPES)
async def test_the_front_answers_initialize_as_the_sdk_does(
    version: str, capabilities: dict[str, Any]
) -> None:
    message = initialize(7, version)
    message["params"]["capabilities"] = capabilities
    message["params"]["clientInfo"]["title"] = "A client"
    ours = front.answer(line(message))
    assert ours is not None, "the front must answer the handshake of the clients peers serves"
    assert await sdk_answers([line(message)], 1) == [ours]


async def test_the_front_refuses_discover_as_the_sdk_does() -> None:
    for message in (
        DISCOVER,
        request("d", "server/discover"),
        request(3, "server/discover", {"x": 1}),
    ):
        ours = front.answer(line(message))
        assert ours is not None and ours["error"]["code"] == -32601
        assert await sdk_answers([line(message)], 1) == [ours]


def test_the_front_negotiates_with_the_sdks_revisions() -> None:
    assert front.HANDSHAKE_PROTOCOL_VERSIONS == mcp_types.version.HANDSHAKE_PROTOCOL_VERSIONS
    assert front.LATEST_HANDSHAKE_VERSION == mcp_types.version.LATEST_HANDSHAKE_VERSION


@pytest.mark.parametrize(
    "raw",
    [
        line(request(1, "ping")),
        line(request(1, "tools/list")),
        line(INITIALIZED),
        line({**initialize(), "id": 1.0}),  # the SDK reads a float id as a notification
        line({**initialize(), "id": None}),
        line({**initialize(), "id": True}),
        line({**initialize(), "jsonrpc": "1.0"}),
        line({**initialize(), "params": []}),
        line([initialize()]),  # type: ignore[arg-type]
        b"{not json",
        b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "\xff"}}',
        line(request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})),
        line(request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {"tasks": {}},
                                       "clientInfo": {"name": "x", "version": "1"}})),
        line(request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                       "clientInfo": {"name": "x", "version": "1", "icons": []}})),
    ],
)  # fmt: skip
def test_the_front_leaves_what_it_does_not_check_to_the_sdk(raw: bytes) -> None:
    assert front.answer(raw) is None


_TEXT = st.text(max_size=8)
_ANY = st.none() | st.booleans() | st.integers() | _TEXT | st.lists(st.integers(), max_size=2)


def _mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The valid shape four times in five, anything at all otherwise."""
    return st.integers(0, 4).flatmap(lambda n: valid if n else _ANY)


_OBJECTS = st.dictionaries(_TEXT, _mostly(st.dictionaries(_TEXT, _ANY, max_size=2)), max_size=2)
_PARAMS = st.fixed_dictionaries(
    {
        "protocolVersion": _mostly(st.sampled_from(REVISIONS)),
        "clientInfo": _mostly(
            st.fixed_dictionaries(
                {"name": _mostly(_TEXT), "version": _mostly(_TEXT)},
                optional={
                    "title": _mostly(_TEXT),
                    "websiteUrl": _mostly(_TEXT),
                    "description": _mostly(_TEXT),
                    "extra": _ANY,
                },
            )
        ),
        "capabilities": _mostly(
            st.fixed_dictionaries(
                {},
                optional={
                    "experimental": _mostly(_OBJECTS),
                    "roots": _mostly(
                        st.fixed_dictionaries({}, optional={"listChanged": _mostly(st.booleans())})
                    ),
                    "sampling": _mostly(_OBJECTS),
                    "elicitation": _mostly(_OBJECTS),
                    "unknown": _ANY,
                },
            )
        ),
    },
    optional={"_meta": st.just({}) | _OBJECTS, "extra": _ANY},
)


def _edge(capabilities: Any = None, **info: Any) -> dict[str, Any]:
    return {
        "protocolVersion": "2025-06-18",
        "capabilities": {} if capabilities is None else capabilities,
        "clientInfo": {"name": "x", "version": "1", **info},
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=_PARAMS, request_id=st.integers(-(2**60), 2**60) | _TEXT)
@example(params=_edge({"roots": {"listChanged": 5}}), request_id=1)
@example(params=_edge({"roots": {"listChanged": "yes", "other": 1}}), request_id=1)
@example(params=_edge({"experimental": {"x": 1}}), request_id=1)
@example(params=_edge({"sampling": {"tools": True}}), request_id=1)
@example(params=_edge({"elicitation": []}), request_id=1)
@example(params=_edge(title=3), request_id=1)
@example(params=_edge(version=None), request_id=1)
@example(params={**_edge(), "_meta": {"progressToken": []}}, request_id=1)
@example(params={**_edge(), "protocolVersion": 20250618}, request_id=1)
def test_whatever_the_front_answers_the_sdk_answers_the_same(
    params: dict[str, Any], request_id: int | str
) -> None:
    raw = line(request(request_id, "initialize", params))
    ours = front.answer(raw)
    if ours is not None:
        assert anyio.run(sdk_answers, [raw], 1) == [ours]


# -- handshake() on a pipe ---------------------------------------------------------


def _pipe_handshake(data: bytes, byte_by_byte: bool = False) -> tuple[front.Handover, list[Any]]:
    """Run handshake() with ``data`` on its stdin; return it and what it wrote."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()

    def feed() -> None:
        try:
            for i in range(len(data)) if byte_by_byte else [None]:
                os.write(in_w, data[i : i + 1] if i is not None else data)
        except BrokenPipeError:
            pass  # the handshake stopped reading: the rest is the SDK's
        finally:
            os.close(in_w)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        handover = front.handshake(in_r, out_w)
    finally:
        os.close(in_r)
        writer.join()
        os.close(out_w)
    with os.fdopen(out_r, "rb") as out:
        written = [json.loads(x) for x in out.read().splitlines()]
    return handover, written


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_handshake_answers_discover_and_initialize_and_hands_over_what_it_read(
    byte_by_byte: bool,
) -> None:
    data = (
        b"\n" + line(DISCOVER) + b"\n\n" + line(initialize(1)) + b"\n" + line(INITIALIZED) + b"\n"
    )
    handover, written = _pipe_handshake(data, byte_by_byte)
    assert written == list(handover.answered)
    assert [a["id"] for a in written] == [0, 1] and handover.initialized
    # Whatever it read, the SDK reads again: it never reads past initialize on its own,
    # so what it read is a prefix of the stream, ending at or after initialize's line.
    assert data.startswith(handover.consumed)
    assert len(handover.consumed) >= data.index(line(initialize(1))) + len(line(initialize(1)))


def test_handshake_stops_at_the_first_line_it_does_not_answer() -> None:
    data = line(request(1, "ping")) + b"\n" + line(initialize(2)) + b"\n"
    handover, written = _pipe_handshake(data)
    assert written == [] and handover.answered == ()
    assert handover.consumed == data  # all of it goes to the SDK, which answers both


@pytest.mark.parametrize(
    "data",
    [b"", line(DISCOVER) + b"\n" + line(initialize(1))[:40], b"x" * (2 * 1024 * 1024)],
    ids=["empty", "eof-mid-line", "overlong-line"],
)
def test_handshake_stops_at_eof_and_at_an_overlong_line(data: bytes) -> None:
    handover, written = _pipe_handshake(data)
    assert not handover.initialized
    assert data.startswith(handover.consumed)
    assert written == list(handover.answered)


# -- real processes ----------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, namespace: str) -> dict[str, str]:
    return {
        "PEERS_URL": f"sqlite:///{tmp_path}/peers.db",
        "PEERS_NAMESPACE": namespace,
        "PEERS_LOG_LEVEL": "debug",
        "CLAUDE_PROJECT_DIR": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }


def _answered_once(received: list[dict[str, Any]], ids: list[int]) -> list[int]:
    """The ids of the answers, in the order written; each requested id exactly once."""
    answered = [m["id"] for m in received if "method" not in m]
    assert sorted(answered, key=str) == sorted(ids, key=str), answered
    return answered


@pytest.mark.slow
async def test_requests_sent_before_the_sdk_is_ready_are_answered_once_in_order(
    env: dict[str, str], tmp_path: Path
) -> None:
    async with RawServe(env, tmp_path / "serve.log") as serve:
        # Everything at once, as a client that pipelines would: the SDK is not loaded yet.
        await serve.send(
            DISCOVER, initialize(1, client="codex-mcp-client"), INITIALIZED,
            request(2, "ping"), request(3, "tools/list"),
            request(4, "tools/call", {"name": "whoami", "arguments": {}}),
            request(5, "ping"),
            request(6, "tools/call", {"name": "list_peers", "arguments": {}}),
        )  # fmt: skip
        for request_id in range(7):
            await serve.reply(request_id)
        await serve.close_stdin()
        serve.received += await serve.rest()
        assert await serve.wait() == 0
    answered = _answered_once(serve.received, list(range(7)))
    # What needs no backend is answered in the order it was sent.
    assert [i for i in answered if i in (0, 1, 2, 3, 5)] == [0, 1, 2, 3, 5]
    by_id = {m["id"]: m for m in serve.received if "method" not in m}
    assert by_id[0]["error"]["code"] == -32601
    assert by_id[1] == front.answer(line(initialize(1, client="codex-mcp-client")))
    assert {t["name"] for t in by_id[3]["result"]["tools"]} >= {"send_message", "whoami"}
    me = by_id[4]["result"]["structuredContent"]
    # The SDK's session state came from the initialize the front answered.
    assert me["client"] == "codex" and me["receive_mode"] == "poll"
    log = serve.stderr()
    assert "answered by the front" in log
    assert "answered differently" not in log


@pytest.mark.slow
async def test_requests_sent_one_by_one_are_answered_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    async with RawServe({**env, "PEERS_NAME": "alone"}, tmp_path / "serve.log") as serve:
        await serve.send(DISCOVER)
        await serve.reply(0)
        await serve.send(initialize("init", channel=True))
        init = await serve.reply("init")
        assert init["result"]["capabilities"]["experimental"] == {"claude/channel": {}}
        await serve.send(INITIALIZED)
        await serve.send(request(1, "ping"))
        await serve.reply(1)
        await serve.send(request(2, "tools/call", {"name": "whoami", "arguments": {}}))
        me = (await serve.reply(2))["result"]["structuredContent"]
        assert me["name"] == "alone" and me["client"] == "claude-code"
        await serve.close_stdin()
        serve.received += await serve.rest()
        assert await serve.wait() == 0
    _answered_once(serve.received, [0, "init", 1, 2])
    assert "answered differently" not in serve.stderr()


@pytest.mark.slow
async def test_a_session_that_opens_with_a_ping_is_all_the_sdks(
    env: dict[str, str], tmp_path: Path
) -> None:
    async with RawServe(env, tmp_path / "serve.log") as serve:
        await serve.send(request(1, "ping"), initialize(2), INITIALIZED,
                         request(3, "tools/call", {"name": "whoami", "arguments": {}}))  # fmt: skip
        for request_id in (1, 2, 3):
            await serve.reply(request_id)
        await serve.close_stdin()
        serve.received += await serve.rest()
        assert await serve.wait() == 0
    _answered_once(serve.received, [1, 2, 3])
    log = serve.stderr()
    assert "answered by the front" not in log and "answered differently" not in log


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"PEERS_RATE_LIMIT": "0"}, "PEERS_RATE_LIMIT"),
        ({"PEERS_URL": "mysql://localhost/peers"}, "known schemes: sqlite://"),
    ],
)
async def test_a_bad_setting_under_a_client_is_said_in_every_tool_result(
    env: dict[str, str], tmp_path: Path, setting: dict[str, str], expected: str
) -> None:
    async with RawServe({**env, **setting}, tmp_path / "serve.log") as serve:
        await serve.send(initialize(1), INITIALIZED)
        assert (await serve.reply(1))["result"]["serverInfo"]["name"] == "peers"
        for request_id in (2, 3):  # it keeps answering
            await serve.send(request(request_id, "tools/call", {"name": "whoami", "arguments": {}}))
            result = (await serve.reply(request_id))["result"]
            assert result["isError"]
            text = result["content"][0]["text"]
            assert "peers cannot start" in text and expected in text
        await serve.close_stdin()
        assert await serve.rest() == []
        assert await serve.wait() == 0
    first = serve.stderr().splitlines()[0]
    assert first.startswith("peers serve: invalid configuration") or "known schemes" in first


@pytest.mark.slow
def test_a_bad_setting_with_no_client_exits_2_with_one_line(tmp_path: Path) -> None:
    command, args = serve_command()
    with open(os.devnull, "rb") as stdin:  # not a pipe: someone ran it by hand
        out = subprocess.run(
            [command, *args], stdin=stdin, capture_output=True, timeout=60,
            env={**os.environ, "PEERS_URL": "mysql://localhost/peers"},
        )  # fmt: skip
    assert out.returncode == 2
    assert out.stdout == b""
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "known schemes: sqlite://" in lines[0]


def python(script: str, **env: str) -> str:
    """What a fresh interpreter running ``script`` prints (it must exit 0)."""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True, env={**os.environ, **env})  # fmt: skip
    return out.stdout


_LOADED = (
    "import sys; from peers.front import load_sdk; serve = load_sdk(); "
    "import peers.transports.sqlite; "
    "print(serve.__name__, sorted(m for m, module in sys.modules.items() if module is not None "
    "and m.startswith(('mcp.client', 'mcp.server.mcpserver', 'rich', 'uvicorn', 'click', "
    "'starlette', 'sse_starlette', 'mcp.server.auth', 'mcp.server.streamable_http'))))"
)


@pytest.mark.slow
def test_serve_loads_the_server_half_of_the_sdk_only() -> None:
    # Nor its HTTP transports (Starlette, OAuth): 3 MB of a stdio session.
    assert python(_LOADED).split(" ", 1) == ["peers.serve", "[]\n"]


_METADATA = (
    "import sys, os; os.environ.pop('PYDANTIC_DISABLE_PLUGINS', None)\n"
    "from peers.front import load_sdk; serve = load_sdk()\n"
    "import peers.transports.sqlite, mcp_types\n"
    "from peers.models import Message\n"
    "Message(id='m', namespace='n', sender_id='a', recipient_id='b', body='hi', sent_at=1.0)\n"
    "mcp_types.jsonrpc_message_adapter.validate_json('{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}')\n"
    "print(sorted(m for m in ('importlib.metadata', 'email.message', 'zipfile', 'csv') if m in sys.modules))\n"
    "import pydantic.networks, pydantic.plugin._loader as loader\n"
    "print(pydantic.networks.version('pydantic') == pydantic.VERSION, list(loader.get_plugins()))\n"
    "print('importlib.metadata' in sys.modules)\n"
)


@pytest.mark.slow
def test_serve_loads_no_package_metadata_and_pydantic_still_reads_it_when_asked() -> None:
    """pydantic imports importlib.metadata's version and entry_points as it loads: they
    resolve when first used; its plugin scan, which would use them at once, is off."""
    first, second, third = python(_METADATA).splitlines()
    assert first == "[]"
    assert second == "True []"
    assert third == "True"  # loaded once asked for, for real


@pytest.mark.slow
def test_a_user_who_sets_the_plugin_switch_keeps_the_plugin_scan() -> None:
    script = (
        "import sys; from peers.front import load_sdk; serve = load_sdk()\n"
        "from peers.models import Message\n"
        "Message(id='m', namespace='n', sender_id='a', recipient_id='b', body='hi', sent_at=1.0)\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    assert python(script, PYDANTIC_DISABLE_PLUGINS="").split() == ["True"]


@pytest.mark.slow
def test_serve_loads_the_whole_sdk_when_its_server_half_needs_it() -> None:
    # The first import fails as it would if an SDK release read mcp's attributes.
    script = (
        "import importlib, peers.front as f\n"
        "real = importlib.import_module\n"
        "calls = []\n"
        "def once(name, *a, **kw):\n"
        "    if name == 'peers.serve':\n"
        "        calls.append(name)\n"
        "        if len(calls) == 1: raise ImportError('cannot import name X from mcp')\n"
        "    return real(name, *a, **kw)\n"
        "f.importlib.import_module = once\n"
        "serve = f.load_sdk()\n"
        "import mcp; print(serve.__name__, hasattr(mcp, 'ClientSession'))\n"
    )
    assert python(script).split() == ["peers.serve", "True"]


_DEFERRED = (
    "import sys, threading\n"
    "from peers.front import load_sdk\n"
    "serve = load_sdk()\n"
    "import mcp_types\n"
    "from peers.models import Message\n"
    "print(mcp_types.ElicitRequest.__pydantic_complete__, Message.__pydantic_complete__)\n"
    "made, failed = [], []\n"
    "def make(i):\n"
    "    try:\n"
    "        made.append(Message(id=f'm{i}', namespace='n', sender_id='a', recipient_id='b',\n"
    "                            body='hi', sent_at=1.0))\n"
    "    except Exception as exc:\n"
    "        failed.append(repr(exc))\n"
    "threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]\n"
    "[t.start() for t in threads]; [t.join() for t in threads]\n"
    "print(len(made), failed, Message.__pydantic_complete__)\n"
    "try:\n"
    "    Message(id='x', namespace='n', sender_id='a', recipient_id='b', body=1, sent_at=1.0)\n"
    "except ValueError:\n"
    "    print('refused')\n"
)


@pytest.mark.slow
def test_serve_builds_each_model_on_first_use_even_from_threads_at_once() -> None:
    # mcp_types' models are built when a session first uses one, not as the SDK loads;
    # the SQLite worker thread builds messages too, so first uses may race.
    assert python(_DEFERRED).splitlines() == ["False False", "8 [] True", "refused"]


def test_models_are_built_at_once_where_pydantic_would_rebuild_without_a_lock() -> None:
    script = (
        "import pydantic.main\n"
        "del pydantic.main._rebuild_lock\n"
        "from peers.front import defer_model_builds\n"
        "from pydantic._internal import _config\n"
        "print(defer_model_builds(), _config.config_defaults['defer_build'])\n"
    )
    assert python(script).split() == ["False", "False"]


_REDIS_LOADED = (
    "import sys; from peers.front import load_sdk; load_sdk(); "  # as peers serve starts
    "from peers import leanimport; leanimport.enable(); "
    "from peers.transports import transport_class; "
    "cls = transport_class('redis://127.0.0.1:1/0'); "
    "print(cls.__name__, sorted(m for m, module in sys.modules.items() if module is not None "
    "and m.startswith(('redis.cluster', 'redis.sentinel', 'redis.asyncio.cluster', "
    "'redis.asyncio.sentinel', 'redis.client', 'redis.asyncio.client', 'redis.commands', "
    "'importlib.metadata', 'zipfile'))), hasattr(sys.modules['redis'], 'Redis'))"
)


@pytest.mark.slow
def test_the_redis_backend_loads_without_redis_pys_package_inits_or_its_client() -> None:
    # Its cluster, sentinel and sync clients (about 1 MB of a session), its Redis class
    # and every command it has (peers has its own client: about 3 MB), and the package
    # metadata and zip readers nothing here reads (1.3 MB).
    assert python(_REDIS_LOADED).split(" ", 1) == ["RedisTransport", "[] False\n"]


@pytest.mark.slow
def test_a_package_that_needs_its_init_is_imported_whole(tmp_path: Path) -> None:
    """A release whose modules read their package's attributes as they load still works."""
    package = tmp_path / "needsinit"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("FLAG = 'set by __init__'\n")
    (package / "inner" / "__init__.py").write_text("")
    (package / "inner" / "mod.py").write_text("import needsinit\nVALUE = needsinit.FLAG\n")
    (package / "lean.py").write_text("VALUE = 'no init needed'\n")
    script = (
        "import sys; from peers.leanimport import import_without_inits\n"
        "whole = import_without_inits('needsinit.inner.mod', ('needsinit', 'needsinit.inner'))\n"
        "print(whole.VALUE)\n"
        "for m in [m for m in sys.modules if m.startswith('needsinit')]: del sys.modules[m]\n"
        "lean = import_without_inits('needsinit.lean', ('needsinit',))\n"
        "print(lean.VALUE, hasattr(sys.modules['needsinit'], 'FLAG'))\n"
    )
    assert python(script, PYTHONPATH=str(tmp_path)).splitlines() == ["set by __init__", "no init needed False"]
