#!/usr/bin/env bash
# text_bench.sh — times the text stages (clean, split, terms) of
# graphs/legal.graph on the full legal corpus with a fresh cache, and the
# library alone (clean_bench, terms_bench).  Build first (Release):
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
# Usage: tests/bench/text_bench.sh [BUILD_DIR]
set -eu
B=${1:-build-rel}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
L=$SRC/../shared/data/legal
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$B/flow" build "$SRC/graphs/legal.graph" terms extra_clean --cache "$T/cache" -j2 --json > "$T/events"
python3 - "$T/events" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == "finished" and e["stage"] in ("clean", "split", "terms"):
        m = e.get("metrics", {})
        keys = ("units", "duplicates", "chars.kept", "chars.dropped", "candidates", "user_terms_in_top_k",
                "train.units", "dev.units", "test.units")
        print("%-12s %6.2f s wall %6.2f s cpu %5d MB  %s" % (e["node"], e["duration_s"], e["cpu_s"],
              e["peak_rss_kb"] // 1024, {k: m[k] for k in keys if k in m}))
PY
echo "library only:"
(cd "$L" && "$OLDPWD/$B/clean_bench" laws extra 2>&1 >/dev/null | head -1)
(cd "$L" && PRINT=1 "$OLDPWD/$B/clean_bench" laws extra 2>/dev/null | cut -f2 > "$T/all.txt")
SHOW=0 "$B/terms_bench" "$T/all.txt" "$L/terms.txt" 200
