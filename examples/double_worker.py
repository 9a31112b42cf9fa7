#!/usr/bin/env python3
"""A task worker for a `mode = task` pool: x * 2 for each item.

Takes both task forms: {"id": N, "item": X} answered by {"id": N, "result":
2X}, and chunks (pools with task_chunks = yes) {"id": N, "items": [...]}
answered by {"id": N, "results": [...], "errors": [[index, "text"], ...]}.
It answers every task line it has read in one write: with task_window > 1
mpsupd writes several ahead."""
import json
import os
import sys


def f(x):
    return x * 2


def answer(task):
    if "items" not in task:
        try:
            return {"id": task["id"], "result": f(task["item"])}
        except Exception as e:
            return {"id": task["id"], "error": "%s: %s" % (type(e).__name__, e)}
    results, errors = [], []
    for i, x in enumerate(task["items"]):
        try:
            results.append(f(x))
        except Exception as e:
            results.append(None)
            errors.append([i, "%s: %s" % (type(e).__name__, e)])
    out = {"id": task["id"], "results": results}
    if errors:
        out["errors"] = errors
    return out


buf = b""
while True:
    data = os.read(0, 1 << 16)
    if not data:
        break
    lines = (buf + data).split(b"\n")
    buf = lines.pop()
    out = "".join(json.dumps(answer(json.loads(line))) + "\n" for line in lines if line.strip())
    sys.stdout.write(out)
    sys.stdout.flush()
