"""flowtest.py — what the Python cross-check tests share: finding flow and
its test tools (a missing one is a skip, exit 77), counted checks, running
a command, and random flow-shaped batches.

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
    from flowtest import Checks, output, random_batch, require_tools, run
"""
import os
import subprocess
import sys


def require_tools(*names):
    """$FLOW, $FLOW_BUILD and the paths of the named tools in $FLOW_BUILD;
    exits 77 (skip) when one is missing."""
    flow = os.environ.get("FLOW")
    build = os.environ.get("FLOW_BUILD")
    if not flow or not os.access(flow, os.X_OK) or not build:
        print("skip: $FLOW / $FLOW_BUILD not set")
        sys.exit(77)
    paths = []
    for name in names:
        path = os.path.join(build, name)
        if not os.access(path, os.X_OK):
            print("skip: %s not built" % path)
            sys.exit(77)
        paths.append(path)
    return flow, build, paths


class Checks:
    """check(what, cond) counts and prints failures; check.finish() exits 1
    when any failed."""

    def __init__(self, test):
        self.test = test
        self.failures = 0

    def __call__(self, what, cond):
        if not cond:
            self.failures += 1
            print("FAIL: " + what)
        return cond

    def finish(self):
        if self.failures:
            print("%s: %d checks failed" % (self.test, self.failures))
            sys.exit(1)


def run(args, stdin=None, expect=0):
    """The finished process; exits 1 when its status is not `expect`
    (None: any status)."""
    r = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if expect is not None and r.returncode != expect:
        print("command exited %d (expected %d): %s\n%s" % (r.returncode, expect, " ".join(args), r.stderr[-2000:]))
        sys.exit(1)
    return r


def output(args, stdin=None):
    """The standard output of a command that must succeed."""
    return run(args, stdin).stdout


def random_batch(rng, B, T, V):
    """[CLS] random ids [SEP], random lengths 2..T (row 0 full), padding 0,
    token types 0 then 1 after a random split point; numpy int64 [B, T]
    ids, types and mask."""
    import numpy as np
    ids = np.zeros((B, T), dtype=np.int64)
    types = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.int64)
    for b in range(B):
        n = T if b == 0 else int(rng.integers(2, T + 1))
        ids[b, :n] = rng.integers(5, V, n)
        ids[b, 0], ids[b, n - 1] = 2, 3
        mask[b, :n] = 1
        cut = int(rng.integers(1, n + 1))
        types[b, cut:n] = 1
    return ids, types, mask
