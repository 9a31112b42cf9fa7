#!/usr/bin/env python3
"""The condition e2e tests (test_condition.py) again, each daemon keeping its
state in a private redis-server (state_backend = redis)."""
import os
import runpy
import sys

os.environ["MPSUP_TEST_STATE_BACKEND"] = "redis"
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
runpy.run_path(os.path.join(here, "test_condition.py"), run_name="__main__")
