#!/usr/bin/env python3
"""layers_test.py — imports point down the layers, and nothing imports in a
circle (README "Architecture").

Layers, by folder:  base (engine/base/) <- cache (cache/) <- engine
(engine/*.c, engine/*.h) <- stages (stages/) <- commands (engine/commands/);
kernels (kernels/, with cpu/, quant/, cuda/) beside stages, on base only.

Checked two ways:
  1. the source text: every `#include "..."` of a library file (.c/.h/.cu under
     those folders) names a header of its own layer or of one it may use,
     and no header includes itself through others (an include circle);
  2. the built objects (FLOW_BUILD, default build/; skipped in this part
     only when no objects are there): the file graph of which object calls
     or reads a symbol defined by which other has no circle (a file-level
     import cycle, like store.c <-> records.c was), and every edge obeys
     the same layer rule.  Besides, the domain folders of stages/ form no
     circle among themselves (stages/registry_all.c, which lists every
     stage, is the one file above them).
Exit 0 when all hold, 1 with the offending files and symbols otherwise.
Needs nm (binutils) for part 2.
"""
import collections
import glob
import os
import re
import subprocess
import sys

SRC = os.environ.get("FLOW_SRC") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("FLOW_BUILD") or os.path.join(SRC, "build")

ALLOWED = {
    "base": {"base"},
    "cache": {"base", "cache"},
    "engine": {"base", "cache", "engine"},
    "kernels": {"base", "kernels"},
    "stages": {"base", "cache", "engine", "kernels", "stages"},
    "commands": {"base", "cache", "engine", "kernels", "stages", "commands"},
}


def layer(path):
    """The layer of a root-relative path, or None outside the libraries."""
    if path.startswith("engine/base/"):
        return "base"
    if path.startswith("engine/commands/"):
        return "commands"
    if path.startswith("engine/"):
        return "engine"
    for top in ("cache", "kernels", "stages"):
        if path.startswith(top + "/"):
            return top
    return None


def sccs(graph):
    """Strongly connected components with more than one node (iterative Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            pushed = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    pushed = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if pushed:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def check_includes(errors):
    files = []
    for top in ("engine", "cache", "kernels", "stages"):
        for ext in ("c", "h", "cu"):
            files += glob.glob(os.path.join(SRC, top, "**", "*." + ext), recursive=True)
    inc = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
    graph = collections.defaultdict(set)
    nchecked = 0
    for f in sorted(files):
        rel = os.path.relpath(f, SRC)
        src_layer = layer(rel)
        text = open(f, encoding="utf-8", errors="replace").read()
        for name in inc.findall(text):
            # root-relative first (the project's style), then beside the file
            cands = [name, os.path.normpath(os.path.join(os.path.dirname(rel), name))]
            target = next((c for c in cands if os.path.isfile(os.path.join(SRC, c))), None)
            if target is None:
                continue        # a system or generated header
            nchecked += 1
            t_layer = layer(target)
            if t_layer and src_layer and t_layer not in ALLOWED[src_layer]:
                errors.append("%s (%s) includes %s (%s): %s may use only %s" % (
                    rel, src_layer, target, t_layer, src_layer, ", ".join(sorted(ALLOWED[src_layer]))))
            if rel.endswith(".h") and target.endswith(".h"):
                graph[rel].add(target)
    for comp in sccs(graph):
        errors.append("include circle among headers: " + " -> ".join(comp))
    return nchecked


def check_objects(errors):
    objs = [o for ext in ("c", "cu")
            for o in glob.glob(os.path.join(BUILD, "CMakeFiles", "flow_*.dir", "**", "*.%s.o" % ext), recursive=True)]
    if not objs:
        if os.environ.get("FLOW_BUILD"):    # under ctest: the objects must be there
            errors.append("no library objects under %s/CMakeFiles" % BUILD)
        else:
            print("layers_test: no objects under %s/CMakeFiles: the symbol-level part was not run" % BUILD)
        return 0
    defs, uses = {}, {o.split(".dir" + os.sep, 1)[1][:-2]: set() for o in objs}
    # one nm for all objects: -A prefixes each line with "OBJECT:"
    out = subprocess.run(["nm", "-A"] + objs, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        obj, _, rest = line.partition(": ")
        if not rest:
            obj, _, rest = line.partition(":")
        rel = obj.split(".dir" + os.sep, 1)[1][:-2]
        p = rest.split()
        if len(p) == 3 and p[1] in "TDBRC":
            defs[p[2]] = rel
        elif len(p) == 2 and p[0] == "U":
            uses[rel].add(p[1])
    graph = collections.defaultdict(set)
    why = {}
    for f, syms in uses.items():
        for sym in sorted(syms):
            t = defs.get(sym)
            if t and t != f:
                graph[f].add(t)
                why.setdefault((f, t), sym)
    for (f, t), sym in sorted(why.items()):
        lf, lt = layer(f), layer(t)
        if lf and lt and lt not in ALLOWED[lf]:
            errors.append("%s (%s) uses %s of %s (%s): %s may use only %s" % (
                f, lf, sym, t, lt, lf, ", ".join(sorted(ALLOWED[lf]))))
    for comp in sccs(graph):
        edges = ["%s -> %s (%s)" % (f, t, why[(f, t)]) for f in comp for t in sorted(graph[f]) if t in comp]
        errors.append("import circle among files: %s\n    %s" % (", ".join(comp), "\n    ".join(edges)))
    # domain folders of stages/ (the registry in stages/ itself lists them all)
    fg = collections.defaultdict(set)
    for f, ts in graph.items():
        for t in ts:
            a, b = os.path.dirname(f), os.path.dirname(t)
            if a != b and a.startswith("stages/") and b.startswith("stages/"):
                fg[a].add(b)
    for comp in sccs(fg):
        errors.append("import circle among the folders of stages/: " + ", ".join(comp))
    return len(objs)


def main():
    errors = []
    nincl = check_includes(errors)
    nobj = check_objects(errors)
    if nincl < 100:
        errors.append("only %d project includes found under %s: wrong FLOW_SRC?" % (nincl, SRC))
    for e in errors:
        print("FAIL: " + e)
    if errors:
        return 1
    print("layers_test: %d includes and %d objects: imports point down, no circle" % (nincl, nobj))
    return 0


if __name__ == "__main__":
    sys.exit(main())
