#!/usr/bin/env python3
"""golden_test.py — a stage's version is bumped whenever its output changes.

Builds tests/golden/golden.graph (one node of every stage kind on the tiny
fixed corpus in tests/golden/data/) in a fresh cache with `-j 2` and
compares every node with tests/golden/table.tsv: stage, version, node key
and the SHA-256 of each output part's bytes (but the report's volatile
parts, which its report.json lists: timings, host, date).

  - same key, other bytes (or other parts): the stage changed its output
    without a version bump.  The failure names the stage and says: bump its
    version, or restore its output.  This is the one that matters: a cache
    made before the change would serve the old bytes under that key.
  - another key (a version bump, changed inputs from upstream, changed
    parameter defaults): the table is stale.  Regenerate it in the same
    commit as the change.
  - a stage kind without a node in golden.graph: add one.

Regenerating the table, deliberately (never in CI):

    FLOW_GOLDEN_UPDATE=1 ctest --test-dir build-test -R golden_test

(or `FLOW_GOLDEN_UPDATE=1 FLOW=build/flow python3 tests/golden_test.py`).
It rewrites the table and prints which rows changed; commit it together
with the version bump.  Part bytes do not depend on the thread count
(`-j 2` here; tests/threads_legal_slow_test.sh checks 1, 2 and 3).
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

SRC = os.environ.get("FLOW_SRC") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOW = os.environ.get("FLOW")
GOLDEN = os.path.join(SRC, "tests", "golden")
GRAPH = os.path.join(GOLDEN, "golden.graph")
TABLE = os.path.join(GOLDEN, "table.tsv")
UPDATE = os.environ.get("FLOW_GOLDEN_UPDATE") == "1"
REGEN = "FLOW_GOLDEN_UPDATE=1 ctest --test-dir build-test -R golden_test"

if not FLOW or not os.access(FLOW, os.X_OK):
    print("FAIL: $FLOW is not an executable (run through ctest)")
    sys.exit(1)
if UPDATE and os.environ.get("CI"):
    print("FAIL: FLOW_GOLDEN_UPDATE is for a developer regenerating the table on purpose, not for CI")
    sys.exit(1)


def flow(*args, binary=False):
    r = subprocess.run([FLOW] + list(args), capture_output=True)
    if r.returncode != 0:
        print("FAIL: flow %s exited %d: %s" % (" ".join(args), r.returncode, r.stderr.decode(errors="replace")[-2000:]))
        sys.exit(1)
    return r.stdout if binary else r.stdout.decode()


def stage_kinds():
    """Every stage kind the binary knows (from the unknown-stage error)."""
    with tempfile.TemporaryDirectory(prefix="flow-golden-") as t:
        g = os.path.join(t, "probe.graph")
        open(g, "w").write("x = no_such_stage_kind { }\n")
        r = subprocess.run([FLOW, "dag", g], capture_output=True, text=True)
        m = re.search(r"known stages: ([^\n]*)", r.stderr)
        if not m:
            print("FAIL: cannot list the stage kinds: %s" % r.stderr)
            sys.exit(1)
        return [s.strip() for s in m.group(1).split(",")]


def current_rows(cache):
    out = flow("build", GRAPH, "--cache", cache, "--json", "-j", "2")
    keys = {}
    for line in out.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "finished":
            keys[e["node"]] = e["key"]
    rows = []
    for node in sorted(keys):
        meta = json.loads(flow("show", keys[node], "--json", "--cache", cache))
        listing = flow("cat", keys[node], "--cache", cache)
        parts = [l.strip().split(None, 1)[1] for l in listing.splitlines() if l.strip()]
        if meta["stage"] == "report" and "report.json" in parts:
            # timings, host and date: not a function of the key (stages/report/report.h)
            volatile = json.loads(flow("cat", keys[node], "report.json", "--cache", cache))["volatile_parts"]
            parts = [p for p in parts if p not in volatile]
        if not parts:
            rows.append((node, meta["stage"], str(meta["version"]), keys[node], "-", "-"))
        for p in sorted(parts):
            data = flow("cat", keys[node], p, "--cache", cache, binary=True)
            rows.append((node, meta["stage"], str(meta["version"]), keys[node], p,
                         hashlib.sha256(data).hexdigest()))
    return rows


def read_table():
    rows = []
    if not os.path.exists(TABLE):
        return rows
    for line in open(TABLE, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        f = line.rstrip("\n").split("\t")
        if len(f) != 6:
            print("FAIL: %s: malformed row %r" % (TABLE, line))
            sys.exit(1)
        rows.append(tuple(f))
    return rows


def write_table(rows):
    with open(TABLE, "w", encoding="utf-8") as f:
        f.write("# tests/golden/table.tsv: what tests/golden/golden.graph builds (-j 2).\n"
                "# Regenerate only on purpose, with a stage version bump:\n#   %s\n"
                "# node\tstage\tversion\tkey\tpart\tsha256\n" % REGEN)
        for r in rows:
            f.write("\t".join(r) + "\n")


with tempfile.TemporaryDirectory(prefix="flow-golden-") as tmp:
    now = current_rows(os.path.join(tmp, "cache"))

failures = []
kinds_built = {r[1] for r in now}
for k in stage_kinds():
    if k not in kinds_built:
        failures.append("stage '%s' has no node in tests/golden/golden.graph: add one (a tiny fixed input), "
                        "then regenerate the table" % k)

old = read_table()
by_node_old, by_node_now = {}, {}
for r in old:
    by_node_old.setdefault(r[0], []).append(r)
for r in now:
    by_node_now.setdefault(r[0], []).append(r)

if UPDATE:
    changed = sorted(n for n in set(by_node_old) | set(by_node_now) if by_node_old.get(n) != by_node_now.get(n))
    write_table(now)
    print("golden_test: wrote %s (%d rows); nodes changed: %s" % (TABLE, len(now), ", ".join(changed) or "none"))
    for n in changed:
        o, c = by_node_old.get(n), by_node_now.get(n)
        ov = o[0][1] + " v" + o[0][2] if o else "(new)"
        cv = c[0][1] + " v" + c[0][2] if c else "(gone)"
        print("  %s: %s -> %s" % (n, ov, cv))
    for f in failures:
        print("FAIL: " + f)
    sys.exit(1 if failures else 0)

stale = []
for node in sorted(set(by_node_old) | set(by_node_now)):
    o, c = by_node_old.get(node), by_node_now.get(node)
    if not o:
        stale.append("node '%s' (stage %s) is not in the table" % (node, c[0][1]))
        continue
    if not c:
        stale.append("node '%s' is in the table but no longer in golden.graph" % node)
        continue
    stage, v_old, key_old = o[0][1], o[0][2], o[0][3]
    v_now, key_now = c[0][2], c[0][3]
    if key_old == key_now:
        parts_old = {r[4]: r[5] for r in o}
        parts_now = {r[4]: r[5] for r in c}
        if parts_old != parts_now:
            diff = sorted(p for p in set(parts_old) | set(parts_now) if parts_old.get(p) != parts_now.get(p))
            failures.append(
                "stage '%s' (version %s) changed its output bytes without a version bump: node '%s', same key "
                "%s, parts differ: %s.  Bump its version (`.version` in its stages/ file), or restore its "
                "output; after a bump regenerate the table in the same commit: %s.  (If nothing changed in "
                "the code, this machine makes other bytes than the one that wrote the table: same key, "
                "other bytes, which issue 9 section 1 forbids too.)"
                % (stage, v_now, node, key_now[:12], ", ".join(diff), REGEN))
    elif v_old != v_now:
        stale.append("stage '%s' is now version %s (table: %s)" % (stage, v_now, v_old))
    else:
        stale.append("node '%s' (stage %s, version %s): its key changed (its inputs from upstream, its "
                     "parameters or their defaults)" % (node, stage, v_now))

for f in failures:
    print("FAIL: " + f)
if stale:
    print("FAIL: tests/golden/table.tsv is stale; regenerate it in the same commit as the change (%s):" % REGEN)
    for s in stale:
        print("  " + s)
if failures or stale:
    sys.exit(1)
print("golden_test: %d nodes, %d parts, %d stage kinds: all as in the table" % (len(by_node_now), len(now), len(kinds_built)))
