#!/usr/bin/env python3
"""link_closure.py BUILD_DIR OBJ... — the flow sources a program needs.

Prints, one per line and relative to the source root, every .c file of
flow's libraries whose object (BUILD_DIR/CMakeFiles/flow_*.dir/PATH.c.o)
defines a symbol that OBJ needs, directly or through another such object
(the closure a static link would pull in).  tests/fuzz_test.sh uses it to
compile the parser fuzzer from exactly the sources it needs, whatever
folder they live in.  Needs nm (binutils)."""
import glob, os, subprocess, sys


def symbols(obj):
    defs, undef = set(), set()
    out = subprocess.run(["nm", obj], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        p = line.split()
        if len(p) == 3 and p[1] in "TDBRCVW":
            defs.add(p[2])
        elif len(p) == 2 and p[0] == "U":
            undef.add(p[1])
    return defs, undef


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: link_closure.py BUILD_DIR OBJ...")
    build = sys.argv[1]
    objs = glob.glob(os.path.join(build, "CMakeFiles", "flow_*.dir", "**", "*.c.o"), recursive=True)
    if not objs:
        sys.exit("link_closure: no flow library objects under %s/CMakeFiles (build flow first)" % build)
    definer, needs = {}, {}
    for o in objs:
        src = o.split(".dir" + os.sep, 1)[1][:-2]          # engine/parse.c
        d, u = symbols(o)
        needs[src] = u
        for s in d:
            definer.setdefault(s, src)
    want = set()
    for o in sys.argv[2:]:
        want |= symbols(o)[1]
    seen, todo = set(), list(want)
    while todo:
        s = todo.pop()
        src = definer.get(s)
        if src and src not in seen:
            seen.add(src)
            todo.extend(needs[src])
    for src in sorted(seen):
        print(src)


if __name__ == "__main__":
    main()
