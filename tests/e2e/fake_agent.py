"""A stand-in agent process for the commit-guard tests: ``python fake_agent.py CONTROL -- CMD...``.

It starts CMD (``peers serve``) as its child with its own standard streams, so the
MCP client that started it talks to that server directly, and it runs the commands
the test asks for as its children too (a JSON ``{"argv", "cwd", "env"}`` written to
CONTROL/run.json; the result comes back in CONTROL/result.json), the way an agent's
shell tool runs ``git commit``. It exits with the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

control, cmd = sys.argv[1], sys.argv[3:]
child = subprocess.Popen(cmd)
request = os.path.join(control, "run.json")
while child.poll() is None:
    if os.path.exists(request):
        with open(request) as f:
            spec = json.load(f)
        os.unlink(request)
        done = subprocess.run(
            spec["argv"], cwd=spec["cwd"], env={**os.environ, **spec.get("env", {})},
            capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        tmp = os.path.join(control, "result.tmp")
        with open(tmp, "w") as f:
            json.dump({"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}, f)
        os.replace(tmp, os.path.join(control, "result.json"))
    time.sleep(0.02)
sys.exit(child.returncode)
