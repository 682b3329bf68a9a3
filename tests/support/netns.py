"""A private network namespace with only loopback (``unshare --net``, as root), where the kernel's TCP counters count
one scenario's connections alone: ``AttemptFails`` in ``/proc/net/snmp`` is the number of connection attempts that
were refused because nothing listened, which no server can observe.

``in_private_network(function, *args)`` runs ``function(*args)`` (a module-level function returning JSON-able data)
in a fresh Python process inside a new namespace and returns its result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

RUNNER = """
import importlib, json, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
module, name, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
result = getattr(importlib.import_module(module), name)(*args)
print("RESULT " + json.dumps(result))
"""


def tcp_counter(name: str) -> int:
    """A counter of the ``Tcp:`` lines of ``/proc/net/snmp`` (of this process's network namespace)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
    names, values = lines[0], lines[1]
    return int(values[names.index(name)])


def in_private_network(function: Callable[..., Any], *args: Any) -> Any:
    command = ["unshare", "--net", "--", sys.executable, "-c", RUNNER, function.__module__, function.__name__]
    done = subprocess.run(
        [*command, json.dumps(args)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0, f"the scenario failed:\n{done.stdout}\n{done.stderr}"
    assert results, f"the scenario returned nothing:\n{done.stdout}"
    return json.loads(results[-1].removeprefix("RESULT "))
