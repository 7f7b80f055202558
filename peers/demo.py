"""``peers demo``: three real sessions in a throw-away store, talking to each other."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any, TextIO

import anyio

from peers.mcpclient import PeerClient

__all__ = ["run_demo"]


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


def _lines(text: str, indent: str = "    ") -> str:
    return "\n".join(indent + line for line in text.splitlines())


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def _demo(out: TextIO, errlog: TextIO) -> None:
    with tempfile.TemporaryDirectory(prefix="peers-demo-") as tmp:
        base = {
            "PEERS_URL": f"sqlite:///{tmp}/peers.db",
            "PEERS_NAMESPACE": "demo",
            "PEERS_LOG_LEVEL": "warning",
            "CLAUDE_PROJECT_DIR": tmp,
        }
        _say(out, f"peers demo: three sessions sharing a temporary store in {tmp}\n")
        async with (
            PeerClient({**base, "PEERS_NAME": "alice"}, cwd=tmp, errlog=errlog) as alice,
            PeerClient({**base, "PEERS_NAME": "bob"}, cwd=tmp, errlog=errlog) as bob,
            PeerClient(
                {**base, "PEERS_NAME": "carol"},
                client_name="codex-mcp-client",
                channel=False,
                cwd=tmp,
                errlog=errlog,
            ) as carol,
        ):
            for who, client in (("alice", alice), ("bob", bob), ("carol", carol)):
                me = await client.wait_registered()
                _say(
                    out,
                    f"started {who}: id {me['id']}, {me['client']}, receives by {me['receive_mode']}",
                )

            _say(out, "\n1. alice: list_peers(scope='machine')")
            _say(out, _lines(_text(await alice.call("list_peers", scope="machine"))))

            _say(out, "\n2. alice -> bob: send_message (bob's session gets it by push)")
            started = time.time()
            sent = await alice.call_ok(
                "send_message", to_id="bob", message="Are you touching api.py?"
            )
            push = await bob.next_channel()
            latency_ms = (push.received_at - started) * 1000
            _say(out, f"    {sent['delivery']}: message {sent['message_id']}")
            _say(
                out,
                f"    bob received <channel from_name={push.meta['from_name']!r}>{push.content}</channel>",
            )
            _say(out, f"    send_message call to notification at bob: {latency_ms:.1f} ms")

            _say(out, "\n3. bob -> alice: a reply with reply_to")
            await bob.call_ok(
                "send_message",
                to_id=push.meta["from_id"],
                message="No, I'm in ui/. It's yours.",
                reply_to=push.meta["message_id"],
            )
            reply = await alice.next_channel()
            _say(
                out, f"    alice received (reply_to={reply.meta.get('reply_to')}): {reply.content}"
            )

            _say(out, "\n4. alice: broadcast_message(scope='machine')")
            result = await alice.call(
                "broadcast_message", message="Deploy freeze at 5pm.", scope="machine"
            )
            _say(out, _lines(_text(result)))
            got = await bob.next_channel()
            _say(out, f"    bob received by push: {got.content}")

            _say(
                out,
                "\n5. carol (Codex-like, no push) calls whoami; her mail rides along in the result",
            )
            _say(out, _lines(_text(await carol.call("whoami"))))

            _say(
                out,
                f"\ndone: push latency {latency_ms:.1f} ms (the reference tool polls every second).",
            )


def run_demo(out: TextIO | None = None) -> None:
    """Run the demo; raises on any failure so the exit code tells."""
    # The servers' logs would drown the demo's output.
    with open(os.devnull, "w") as errlog:
        anyio.run(_demo, out or sys.stdout, errlog)
