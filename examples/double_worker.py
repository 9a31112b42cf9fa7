#!/usr/bin/env python3
"""A task worker for a `mode = task` pool: one JSON line in, one out."""
import json
import sys

for line in sys.stdin:
    task = json.loads(line)
    sys.stdout.write(json.dumps({"id": task["id"], "result": task["item"] * 2}) + "\n")
    sys.stdout.flush()
