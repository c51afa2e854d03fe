#!/bin/bash
# source_select_test.sh — which files `source` selects (issue 15) and how it
# treats symlinks (issue 9 §6).
#
# A tree with files at depths 0..4 (top.md, a/x.md, a/b/y.md, a/b/c/z.md,
# a/b/c/d/w.md, plus .txt files beside them) is read with include/exclude
# globs; for each, the exact list of parts must be what the README's rules
# say: `**` at the start, middle and end, a pattern without '/' at every
# depth, exclude, a trailing '/', a pattern that matches nothing (an error
# naming it), an invalid pattern.  Then a dangling symlink (skipped, with
# a warning in the log and metric dangling_symlinks = 1) and a symlink
# loop (an error naming the folder and its ancestor, short; an exclude of
# the loop's folder cuts it).
set -u
FLOW=${FLOW:?FLOW must point at the flow binary}
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-select-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
C=$T/tree
mkdir -p "$C/a/b/c/d" "$C/.hidden"
for f in top a/x a/b/y a/b/c/z a/b/c/d/w; do
    echo "text of $f" > "$C/$f.md"
    echo "notes of $f" > "$C/$f.txt"
done
echo hidden > "$C/.hidden/h.md"
echo hidden > "$C/a/.dot.md"

# parts INCLUDE EXCLUDE: the sorted part names of a source node over $C
parts() {
    cat > "$T/g.graph" <<EOF
src = source { path = "$C"  include = [$1]  exclude = [$2] }
EOF
    rm -rf "$T/cache"
    if ! "$FLOW" build "$T/g.graph" --cache "$T/cache" > "$T/out" 2>&1; then
        echo "BUILD FAILED"
        return
    fi
    local key
    key=$("$FLOW" build "$T/g.graph" --cache "$T/cache" --json | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e.get("event") == "finished": print(e["key"])')
    # part lines of `flow show --parts`: "  SIZE STORED  NAME" (name from column 21)
    "$FLOW" show "$key" --cache "$T/cache" --parts | python3 -c '
import sys
lines = sys.stdin.read().split("\n")
n = int(next(l for l in lines if l.startswith("parts ")).split()[1])
at = next(i for i, l in enumerate(lines) if l.startswith("parts "))
print(" ".join(sorted(l[21:] for l in lines[at + 1:at + 1 + n])))'
}

expect() {   # expect INCLUDE EXCLUDE "PARTS"
    local got
    got=$(parts "$1" "$2")
    if [ "$got" != "$3" ]; then
        echo "FAIL: include [$1] exclude [$2]"
        echo "  want: $3"
        echo "  got:  $got"
        fail=1
    fi
}

ALLMD="a/b/c/d/w.md a/b/c/z.md a/b/y.md a/x.md top.md"
# no '/': base name at every depth (0..4)
expect '"*.md"' '' "$ALLMD"
# ** at the start: zero or more folders, so top.md too
expect '"**/*.md"' '' "$ALLMD"
# one level exactly
expect '"*/*.md"' '' "a/x.md"
expect '"a/*/*.md"' '' "a/b/y.md"
# ** in the middle: zero or more folders between a and the name
expect '"a/**/z.md"' '' "a/b/c/z.md"
expect '"a/**/*.md"' '' "a/b/c/d/w.md a/b/c/z.md a/b/y.md a/x.md"
expect '"a/b/**/d/*.md"' '' "a/b/c/d/w.md"
# ** at the end: everything inside, any depth
expect '"a/b/**"' '' "a/b/c/d/w.md a/b/c/d/w.txt a/b/c/z.md a/b/c/z.txt a/b/y.md a/b/y.txt"
expect '"**"' '"*.txt"' "$ALLMD"
# leading / anchors a base-name pattern at the root
expect '"/*.md"' '' "top.md"
# exclude: a folder at any depth (trailing /), a path glob, a base name
expect '"*.md"' '"c/"' "a/b/y.md a/x.md top.md"
expect '"*.md"' '"a/b/**"' "a/x.md top.md"
expect '"**/*.md"' '"x.md", "top.md"' "a/b/c/d/w.md a/b/c/z.md a/b/y.md"
# the log and metrics count matched and skipped files
parts '"*.md"' '"c/"' > /dev/null
key=$("$FLOW" build "$T/g.graph" --cache "$T/cache" --json | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e.get("event") == "finished": print(e["key"])')
"$FLOW" show "$key" --cache "$T/cache" --json > "$T/show.json"
python3 - "$T/show.json" <<'PY' || fail=1
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
want = {"files_matched": 3, "files_skipped": 3, "hidden_skipped": 2, "folders_excluded": 1}
bad = {k: (m.get(k), v) for k, v in want.items() if m.get(k) != v}
if bad:
    print("FAIL: metrics (got, want):", bad)
    sys.exit(1)
PY
"$FLOW" log "$key" --cache "$T/cache" > "$T/log"
grep -q "include '\*.md': 3 files" "$T/log" || { echo "FAIL: log lacks the include count"; cat "$T/log"; fail=1; }
grep -q "3 skipped by include/exclude" "$T/log" || { echo "FAIL: log lacks the skipped count"; fail=1; }

# an include pattern that matches nothing is an error naming it
cat > "$T/g.graph" <<EOF
src = source { path = "$C"  include = ["*.md", "docs/**/*.rst"] }
EOF
if "$FLOW" build "$T/g.graph" --cache "$T/cache" > "$T/out" 2>&1; then
    echo "FAIL: an include pattern matching nothing was accepted"; fail=1
elif ! grep -q "include pattern 'docs/\*\*/\*.rst' matches no file" "$T/out"; then
    echo "FAIL: the error does not name the pattern:"; cat "$T/out"; fail=1
fi
# an invalid pattern
cat > "$T/g.graph" <<EOF
src = source { path = "$C"  include = ["a//b"] }
EOF
if "$FLOW" build "$T/g.graph" --cache "$T/cache" > "$T/out" 2>&1 || ! grep -q "include pattern 'a//b' is invalid" "$T/out"; then
    echo "FAIL: invalid pattern:"; cat "$T/out"; fail=1
fi

# ---- symlinks ---------------------------------------------------------------
ln -s "$C/nowhere.md" "$C/a/dangling.md"
expect '' '"*.txt"' "$ALLMD"
parts '' '"*.txt"' > /dev/null
key=$("$FLOW" build "$T/g.graph" --cache "$T/cache" --json | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e.get("event") == "finished": print(e["key"])')
"$FLOW" log "$key" --cache "$T/cache" > "$T/log"
grep -q "warning: skipped 1 dangling symlink(s): 'a/dangling.md'" "$T/log" \
    || { echo "FAIL: the dangling symlink is not in the log:"; cat "$T/log"; fail=1; }
"$FLOW" show "$key" --cache "$T/cache" --json | grep -q '"dangling_symlinks": *1' \
    || { echo "FAIL: metric dangling_symlinks is not 1"; fail=1; }
rm "$C/a/dangling.md"

# a symlink loop: a/b/c/up -> a; the error names both, briefly
ln -s "$C/a" "$C/a/b/c/up"
cat > "$T/g.graph" <<EOF
src = source { path = "$C" }
EOF
if "$FLOW" build "$T/g.graph" --cache "$T/cache" > "$T/out" 2>&1; then
    echo "FAIL: a symlink loop was accepted"; fail=1
elif ! grep -q "symlink loop: folder 'a/b/c/up' is 'a' again" "$T/out"; then
    echo "FAIL: the loop is not named:"; cat "$T/out"; fail=1
elif [ "$(wc -c < "$T/out")" -gt 600 ]; then
    echo "FAIL: the loop message is long ($(wc -c < "$T/out") bytes)"; cat "$T/out"; fail=1
fi
# a loop back to the root itself
rm "$C/a/b/c/up"
ln -s "$C" "$C/a/root"
if "$FLOW" build "$T/g.graph" --cache "$T/cache" > "$T/out" 2>&1 || \
   ! grep -q "symlink loop: folder 'a/root' is the source folder again" "$T/out"; then
    echo "FAIL: loop to the root:"; cat "$T/out"; fail=1
fi
# excluding the looping folder cuts the loop (the walk does not enter it)
expect '"*.md"' '"a/root/**"' "$ALLMD"
rm "$C/a/root"
# a symlink to a file and to a folder outside the tree are followed
mkdir -p "$T/outside"
echo "outside text" > "$T/outside/o.md"
ln -s "$T/outside" "$C/a/ext"
ln -s "$T/outside/o.md" "$C/linked.md"
expect '"*.md"' '' "a/b/c/d/w.md a/b/c/z.md a/b/y.md a/ext/o.md a/x.md linked.md top.md"

[ $fail = 0 ] && echo "source_select_test: ok"
exit $fail
