#!/usr/bin/env python3
"""Private and process-scoped objects on the redis state backend
(test_state_redis_scope.py) again, the "hosts" sharing a local 3-master
Redis Cluster, one for the file, emptied before each test."""
import os
import runpy
import sys

os.environ["MPSUP_TEST_STATE_BACKEND"] = "redis-cluster"
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
runpy.run_path(os.path.join(here, "test_state_redis_scope.py"), run_name="__main__")
