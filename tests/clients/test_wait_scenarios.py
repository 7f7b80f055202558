"""Issue 13 with the real CLIs: an orchestrator hands out a task and waits for the answer.

The client's model (the fake) sends a task to a worker session, then calls
``wait_for_messages(from="worker", reply_to=<the task>)``. The worker (another
``peers serve``, driven by the test) waits for its task with its own
``wait_for_messages`` and answers it once the orchestrator's wait is under way.
The answer must reach the orchestrator's model in that wait's result, once,
and be delivered.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_drivers import Driver, Store
from clients_common import CLIENTS, JSON_CLIENTS, result_of, times_seen
from fake_model import Call, FakeModel, ModelRequest, Say
from peer_session import PeerSession

pytestmark = pytest.mark.scenarios

_SENT_ID = re.compile(r"sent (\S+) to ")
_WAITED = re.compile(r"returned after ([0-9.]+) s")
REPLY_AFTER = 2.0


def _task_id(request: ModelRequest, client: str) -> str:
    sent = result_of(request, "send_message")
    assert not sent.is_error, sent.text
    if client in JSON_CLIENTS:
        return str(sent.json()["message_id"])
    found = _SENT_ID.search(sent.payload)
    assert found, sent.text
    return found.group(1)


@pytest.mark.parametrize("client", CLIENTS)
def test_an_orchestrator_waits_for_the_reply_it_asked_for(
    client: str,
    make_driver: Callable[..., Driver],
    fake_model: FakeModel,
    store: Store,
    tmp_path: Path,
) -> None:
    driver = make_driver(client)
    task_body = "add validation to users/route.ts; reply DONE when complete"
    answer = "DONE: validation added to users/route.ts"
    box: dict[str, Any] = {}
    waiting = threading.Event()

    with PeerSession(
        store.env, name="worker", cwd=driver.cwd, errlog=tmp_path / "worker.log"
    ) as worker:

        def work() -> None:
            got = worker.call_ok("wait_for_messages", timeout=90, timeout_s=60)
            [task] = got["messages"]
            box["task"] = task
            waiting.wait(60)  # the orchestrator's model asked to wait
            # Nothing outside the orchestrator's server shows its wait under way: give the
            # client time to make the call, so that the answer comes while it waits (the
            # result's waited_s proves it did; an answer already there returns at once).
            time.sleep(REPLY_AFTER)
            box["replied_at"] = time.monotonic()
            box["reply"] = worker.call_ok(
                "send_message", to_id=task["from_id"], message=answer, reply_to=task["message_id"]
            )

        worker_thread = threading.Thread(target=work, daemon=True)
        worker_thread.start()

        def wait_for_it(request: ModelRequest) -> Call:
            box["task_id"] = _task_id(request, client)
            waiting.set()
            box["asked_at"] = time.monotonic()
            return Call(
                "wait_for_messages",
                {"from": "worker", "reply_to": box["task_id"], "timeout_s": 60},
            )

        def done(request: ModelRequest) -> Say:
            box["answered_at"] = time.monotonic()
            return Say("the worker is done")

        fake_model.play(
            Call("send_message", {"to_id": "worker", "message": task_body}), wait_for_it, done
        )
        run = driver.run("Hand users/route.ts to the worker session and wait for it to finish.")
        worker_thread.join(timeout=30)

    requests = fake_model.agent_requests()
    assert len(requests) == 3, run.describe()
    assert box["task"]["body"] == task_body and box["task"]["message_id"] == box["task_id"]
    waited = result_of(requests[2], "wait_for_messages")
    assert not waited.is_error, waited.text
    assert answer in waited.payload, waited.text
    if client in JSON_CLIENTS:
        block = waited.json()
        [message] = block["messages"]
        assert message["from_name"] == "worker" and message["reply_to"] == box["task_id"]
        assert block["timed_out"] is False
        waited_s = float(block["waited_s"])
    else:
        found = _WAITED.search(waited.payload)
        assert found, waited.text
        waited_s = float(found.group(1))
        assert f"[answers {box['task_id']}]" in waited.payload
    assert waited_s >= REPLY_AFTER / 2, f"it did not wait ({waited_s} s): {run.describe()}"
    # It came back with the answer at once, not at a re-check or the timeout.
    assert box["answered_at"] - box["replied_at"] < 5, run.describe()
    assert times_seen(fake_model, answer) == 1
    assert store.state_of(box["reply"]["message_id"]) == "delivered"
