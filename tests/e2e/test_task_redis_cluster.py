#!/usr/bin/env python3
"""The redis task queue's e2e tests (test_task_redis.py) again, the "hosts"
sharing a local 3-master Redis Cluster, one for the file, emptied before
each test."""
import os
import runpy
import sys

os.environ["MPSUP_TEST_STATE_BACKEND"] = "redis-cluster"
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
runpy.run_path(os.path.join(here, "test_task_redis.py"), run_name="__main__")
