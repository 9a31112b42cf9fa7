#!/usr/bin/env python3
"""The shared-state e2e tests (test_state.py) again, every daemon keeping its
state on a local 3-master Redis Cluster (state_backend = redis), one cluster
for the file, emptied before each test."""
import os
import runpy
import sys

os.environ["MPSUP_TEST_STATE_BACKEND"] = "redis-cluster"
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
runpy.run_path(os.path.join(here, "test_state.py"), run_name="__main__")
