#!/usr/bin/env python3
"""A task worker for the end-to-end tests: what it does depends on the item.

  N (a number)          -> result N * 2
  {"sleep": S, "value": V, "mark": PATH?}
                        -> sleep S seconds, append a line to PATH, result V
  {"exit": C}           -> exit with status C (dies mid-task)
  {"hang": true}        -> never answer
  {"garbage": TEXT}     -> write TEXT as the reply line
  {"wrong_id": true}    -> answer with another id
  {"big": N}            -> a reply line of N bytes
  {"error": TEXT}       -> answer {"error": TEXT}
  {"crash_once": PATH}  -> exit 3 unless PATH exists (it is created first)
  {"hang_once": PATH}   -> never answer unless PATH exists (it is created
                           first), else result "ok"
  {"pid": true}         -> result: this worker's pid
  {"stderr": TEXT}      -> write TEXT to stderr, result "logged"
"""
import json
import os
import sys
import time


def reply(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    task = json.loads(line)
    tid, item = task["id"], task["item"]
    if not isinstance(item, dict):
        reply({"id": tid, "result": item * 2})
        continue
    if "sleep" in item:
        time.sleep(item["sleep"])
        if item.get("mark"):
            with open(item["mark"], "a") as f:
                f.write("%s\n" % json.dumps(item.get("value")))
        reply({"id": tid, "result": item.get("value")})
    elif "exit" in item:
        sys.exit(item["exit"])
    elif "hang" in item:
        time.sleep(1000)
    elif "garbage" in item:
        sys.stdout.write(item["garbage"] + "\n")
        sys.stdout.flush()
    elif "wrong_id" in item:
        reply({"id": tid + 1000, "result": 1})
    elif "big" in item:
        reply({"id": tid, "result": "x" * item["big"]})
    elif "error" in item:
        reply({"id": tid, "error": item["error"]})
    elif "crash_once" in item:
        if not os.path.exists(item["crash_once"]):
            open(item["crash_once"], "w").close()
            sys.exit(3)
        reply({"id": tid, "result": "ok"})
    elif "hang_once" in item:
        if not os.path.exists(item["hang_once"]):
            open(item["hang_once"], "w").close()
            time.sleep(1000)
        reply({"id": tid, "result": "ok"})
    elif "pid" in item:
        reply({"id": tid, "result": os.getpid()})
    elif "stderr" in item:
        sys.stderr.write(item["stderr"] + "\n")
        sys.stderr.flush()
        reply({"id": tid, "result": "logged"})
