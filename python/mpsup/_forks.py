"""This process's pid without a system call per request (os.getpid is one):
connections compare it with the pid that opened them, to never use a
socket inherited across os.fork."""
import os

pid = os.getpid()


def _after_fork():
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)
