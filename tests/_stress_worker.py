"""A child process of tests/test_stress_sqlite.py: one sender or one reader on a shared store.

Usage: python _stress_worker.py <role> <json-args> <result-file>
Writes {"ok": ...} or {"error": traceback} to the result file; exits 1 on error.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from typing import Any

from peers import procinfo
from peers.config import load_settings
from peers.ids import new_message_id
from peers.models import Message, Peer
from peers.transports import create_transport
from peers.transports.base import Transport


async def open_as(args: dict[str, Any], peer_id: str, name: str | None) -> Transport:
    transport = create_transport(load_settings(url=args["url"], namespace=args["namespace"]))
    await transport.connect()
    pid = os.getpid()
    await transport.register(
        Peer(
            id=peer_id,
            namespace=args["namespace"],
            name=name,
            host=transport.host,
            pid=pid,
            pid_start=procinfo.process_start_time(pid),
            cwd=os.getcwd(),
        )
    )
    return transport


async def send(args: dict[str, Any]) -> dict[str, Any]:
    sender = args["sender"]
    recipients = args["recipients"]
    transport = await open_as(args, sender, None)
    try:
        for seq in range(args["count"]):
            message = Message(
                id=new_message_id(),
                namespace=args["namespace"],
                sender_id=sender,
                recipient_id=recipients[seq % len(recipients)],
                body=json.dumps({"seq": seq}),
            )
            await transport.send(message)
    finally:
        await transport.close()
    return {"sent": args["count"]}


async def read(args: dict[str, Any]) -> dict[str, Any]:
    me = args["recipient"]
    transport = await open_as(args, me, args["name"])
    received: list[tuple[str, str, int]] = []
    deadline = time.monotonic() + args["deadline"]
    try:
        while len(received) < args["expected"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{me} got {len(received)} of {args['expected']} in time")
            batch = await transport.fetch(me, limit=50)
            if not batch:
                await transport.wait_for_mail(me, timeout=1.0)
                continue
            received.extend((m.id, m.sender_id, json.loads(m.body)["seq"]) for m in batch)
            acked = await transport.ack(me, [m.id for m in batch])
            if acked != len(batch):
                raise AssertionError(f"acked {acked} of {len(batch)}")
        # Nothing more may arrive once everything expected was read.
        leftover = await transport.fetch(me, limit=50)
    finally:
        await transport.close()
    return {"received": received, "leftover": [m.id for m in leftover]}


def main() -> int:
    role, raw, result_file = sys.argv[1], sys.argv[2], sys.argv[3]
    args = json.loads(raw)
    try:
        result = asyncio.run(send(args) if role == "send" else read(args))
    except BaseException:
        with open(result_file, "w") as out:
            json.dump({"error": traceback.format_exc()}, out)
        return 1
    with open(result_file, "w") as out:
        json.dump({"ok": result}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
