#!/usr/bin/env bash
# scale_bench.sh — cost against corpus size, in bytes and in files (issue 15).
#
# Generates distinct legal-style text (gen_corpus.py: every article
# different) in two families:
#   bytes: 1x, 8x, 64x the shared legal corpus (laws + extra, ~26 MB), with
#          the shared corpus's folder layout and file sizes;
#   files: 10k, 100k, 500k one-article files (8 label folders).
# For each size: source -> clean -> split -> bpe -> encode cold (the
# input read once before, untimed, so that it is in the page cache at
# every size: the comparison is of flow's work, not of the disk), then the
# null build.  bpe has min_word_count = 2 at every size: the generated
# text's serial numbers make its distinct pre-tokens grow with the bytes
# (most are seen once), and exact BPE over all of them needs ~5 bytes of
# merge state per byte of distinct text, beyond 1 GB at 64x; the words
# seen once are left out of the merges (their characters stay in the
# alphabet) at every size, so the sizes do the same work per byte and
# stay comparable.  Counting stays exact (sorted runs spilled to $TMPDIR); per node wall time, CPU, MB/s, files/s and peak RSS, and the
# targets: time per MB and per file at the largest size <= 1.5x the
# smallest's, peak RSS of every text node < 1 GB at 64x, null build of the
# 500k-file graph < 3 s; `flow ls`, `flow show` and `flow gc` on the 500k
# source artifact < 2 s.
#
# Usage: tests/bench/scale_bench.sh [BUILD_DIR] [SIZES...]
#   SIZES: b1 b8 b64 f10k f100k f500k (default: all).  Disk: ~3x the input
#   per size (input, cache, page cache); the 64x set is ~1.7 GB of input.
# Environment: SCALE_TMP (default $TMPDIR or /tmp), SCALE_J (default 2),
# SCALE_CORPORA (a folder where the generated inputs are kept as in_SIZE and
# reused by the next run; default: generated and deleted each run).
#
# Measured (2026-12-01 22:44-23:05 UTC, main at 5922d15, one run of all
# six sizes; the shared 2-core machine at load 5-10.6 (mostly 6-9) from
# other helpers' builds and tests: wall times are largely the load's, and
# CPU times grow with it too (caches shared); input warm for every size):
#   size   input              src          cl           sp           tok          enc
#                             wall/CPU s, peak RSS MB
#   b1     1,440 f, 23.2 MB   0.56/0.30 16 1.73/0.86 85 0.56/0.32 55 0.88/0.51 75 1.54/1.01 69
#   b8    11,520 f, 185.5 MB  3.52/2.38 38 8.53/6.05 289 2.90/2.10 86 20.2/7.72 347 11.8/7.49 231
#   b64   92,160 f, 1484 MB   40.2/21.4 119 76.6/48.7 830 26.8/18.5 207 122.3/63.8 629 94.3/63.2 361
#   f10k  10,000 f, 2.8 MB    0.86/0.37 13 1.67/0.49 34 0.25/0.10 12 0.09/0.05 17 0.19/0.10 18
#   f100k 100,000 f, 28 MB    13.5/6.07 77 15.2/4.34 130 4.19/1.22 68 1.81/0.67 76 2.40/1.02 68
#   f500k 500,000 f, 139 MB   100.1/40.4 256 71.0/25.4 427 27.0/8.43 155 13.6/6.60 339 8.15/5.07 245
#   time per MB, b64 / b1, wall (CPU): src 1.12 (1.13), cl 0.69 (0.89),
#     sp 0.75 (0.90), tok 2.16 (1.95) MISSED (CPU ok since d9e340c: below), enc 0.96 (0.97)
#   time per file, f500k / f10k, wall (CPU): src 2.33 (2.17) MISSED, cl
#     0.85 (1.04), sp 2.16 (1.69) MISSED, tok 3.0 (2.6) and enc 0.86 (1.01)
#     (both under 0.2 s at f10k: noise-prone, not judged)
#   peak RSS at b64: all < 1 GB (cl 830 MB the largest)
#   f500k: null build 4.62 s, again 4.22 s MISSED (< 3 s; 1.32 s at load
#     4-7 at 344d2ff), flow ls 0.23 s, show 0.17 s, gc 3.84 s MISSED
#     (1.48 s at load 4-7 at 344d2ff); b64: null 1.10 s, gc 1.61 s
# tok alone after ae467b0..d9e340c (2026-12-02 02:13-02:16 UTC, same graph and
# inputs, only tok rebuilt (new vocab_size per run), 2 threads, memory_mb 512,
# load 5-7 from other helpers; main's binary of 9d13f20 alternated with it):
#   b1   CPU 0.48 / 0.47 / 0.44 s (main 0.42 / 0.52 / 0.47), wall 0.43-0.48 s
#   b64  CPU 32.5 / 28.8 s (main 40.6; 64.4 at 01:04 at load ~6), wall 54.2 / 47.5 s, 6 spills
#   time per MB b64 / b1: CPU 0.96-1.08 (was 1.95) ok; wall 1.6-1.8 at this
#     load MISSED (the merge into the counter's table and the spills are one
#     thread; not measured on a quiet machine).  Same bytes as main at b1, b8
#     (1 and 2 threads, with and without spilling) and b64.
#   What it was: the counter's table and the thread tables found homes by one
#     function of the tag, so a thread table's slot-order walk piled its words
#     into one moving cluster (70% of tok at b8); the spill sorted by 8 key
#     bytes (under 3 Han characters: most comparisons read two records); each
#     insertion waited for memory.  Now: another home function, a radix sort
#     on the tag, slots/records/text fetched ahead.  Left: the pre-tokenizer
#     (~16%), finish_word (~8%), the spill's gather of records in tag order
#     (~7%: random reads; hash-partitioned spills would write in arena order).
# Earlier findings (one line each; details in the git log):
#   05d73a1..f6a34e2: split streams (b64 peak 3870 -> 184 MB); null build b64 10.95 -> 2.90 s.
#   scale3: bpe held to memory_mb or failing with what it needs; b64 bpe peak 6215 -> 592 MB.
#   source: store map pages dropped every 1024 chunks: 100k files 105.7 -> 80.5 MB peak.
#   344d2ff: gc f500k 2.83 -> 2.1-2.4 s (one stat-cache read txn, no chunk walk); rest: fstatat 45%.
#   24a240e: spill sort on 8 key bytes kept in the slot: bpe 8x/128 MB CPU 9.04 -> 7.40 s, same bytes.
#   min_word_count = 2: b1 354,288 distinct words, 341,795 seen once; training 26 MB not 152 MB.
#   bpe b8 / b1 without spilling (memory_mb 512): CPU per MB 1.04x (not growing); the growth
#     is in spilling (b8 with memory_mb 128, 3 spills: +28% CPU) and in the load.
#   4372d8a: one hash per pre-token, thread tables kept, no zero-page faults: bpe b8/128 MB
#     8.50 / 7.47 s -> 6.46 / 6.76 s wall / CPU; b64 tok CPU 105.5 -> 63.8 s (other loads).
#   source f500k warm under perf (load ~6): 174.8 s wall / 57.2 s CPU; CPU in the kernel (store
#     pool futex hand-offs per small chunk, page faults after the map drops, LMDB page writes).
#   scalesrc (2026-12-02 01:29-01:43 UTC, source -> clean -> split only, corpus generated on
#     tmpfs: kdamond's pageout evicts /work/scale-corpora from the page cache, so a disk corpus
#     measured IO (10+ min of D state for the f500k key); cache on /tmp; load 0.6-7): perf of
#     source f500k: 20% in futex wake-ups of the store pool (finish_task_switch 10%,
#     _raw_spin_unlock_irqrestore 9%), madvise drops 3%, fault-around 3%; page faults per file
#     0.45 at f10k, 1.36 at f500k; context switches 2.2 per file at both.  Byte chunks <= 16 KiB
#     compressed in the caller thread (8694d1f; same keys and bytes): src CPU f500k 31.5 -> 21.2 s
#     (63 -> 42 us/file, load 6-7), f10k 37-43 -> 31-34 us/file: per file f500k/f10k CPU ~1.3x
#     (main 1.5-1.7x in the same minutes); wall at that load not judged (67 vs 36-75 us/file).
#     split f500k: split_assign is ~60% of its CPU (32 seeded greedy passes over 500k groups in
#     random order: counts rows 16 MB, beyond the caches); sp f500k/f10k CPU 1.6-2.0x.  d577a11
#     (majority labels once, counts rows prefetched; same bytes): sp CPU f500k 6.04 -> 3.18 s,
#     f10k 0.071-0.077 -> 0.045 s: 1.41x per group (load ~5, seed 11 on a built cache).
set -eu
B=$(cd "${1:-build}" && pwd)
shift || true
SIZES=${*:-b1 b8 b64 f10k f100k f500k}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
L=$SRC/../shared/data/legal
J=${SCALE_J:-2}
T=$(mktemp -d "${SCALE_TMP:-${TMPDIR:-/tmp}}/flow-scale-bench-XXXXXX")
trap 'rm -rf "$T"' EXIT
echo "scale_bench: $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), -j$J"
RESULTS=$T/results.tsv
: > "$RESULTS"

run_size() {    # run_size NAME DIR
    local name=$1 dir=$2
    local files bytes
    files=$(find "$dir/" -type f | wc -l)     # "$dir/": also when it is a symlink
    bytes=$(du -sbD "$dir" | cut -f1)
    cat > "$T/$name.graph" <<EOF
src = source { path = "$dir"  labels = folders }
cl = clean { input = src }
sp = split { corpus = cl  ratios = [0.8, 0.1, 0.1] }
tok = bpe { text = sp.train  vocab_size = 8000  min_word_count = 2 }
enc = encode { corpus = sp  tokenizer = tok }
EOF
    # the same page-cache state for every size: all of the input cached
    # (read once here, untimed); a size generated just before would
    # otherwise be warm when small and partly cold when large
    find "$dir/" -type f -print0 | xargs -0 cat > /dev/null
    local t0 t1
    t0=$(date +%s.%N)
    "$B/flow" build "$T/$name.graph" --cache "$T/c_$name" -j"$J" --json > "$T/$name.cold" 2> "$T/$name.err" \
        || { echo "$name: build failed: $(grep -o '"error":"[^"]*' "$T/$name.cold" | head -3) $(tail -3 "$T/$name.err")"; return 1; }
    t1=$(date +%s.%N)
    "$B/flow" build "$T/$name.graph" --cache "$T/c_$name" -j"$J" --json > "$T/$name.null" 2>&1
    local t2 t3
    t2=$(date +%s.%N)
    # a second null build: the first may still write the stat cache of files
    # that were younger than its racy window when the cold build hashed them
    "$B/flow" build "$T/$name.graph" --cache "$T/c_$name" -j"$J" --json > "$T/$name.null2" 2>&1
    t3=$(date +%s.%N)
    local srckey
    srckey=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == "finished" and e["node"] == "src": print(e["key"])' "$T/$name.cold")
    local ls_s show_s gc_s
    ls_s=$( { /usr/bin/time -f %e "$B/flow" ls --cache "$T/c_$name" > /dev/null; } 2>&1 | tail -1)
    show_s=$( { /usr/bin/time -f %e "$B/flow" show "$srckey" --cache "$T/c_$name" > /dev/null; } 2>&1 | tail -1)
    gc_s=$( { /usr/bin/time -f %e "$B/flow" gc "$T/$name.graph" --cache "$T/c_$name" > /dev/null; } 2>&1 | tail -1)
    python3 - "$name" "$files" "$bytes" "$t0" "$t1" "$t2" "$T/$name.cold" "$ls_s" "$show_s" "$gc_s" "$t3" >> "$RESULTS" <<'PY'
import json, sys
name, files, nbytes, t0, t1, t2, ev, ls_s, show_s, gc_s, t3 = sys.argv[1:]
files, nbytes = int(files), int(nbytes)
nodes = {}
for l in open(ev):
    e = json.loads(l)
    if e.get("event") == "finished":
        nodes[e["node"]] = e
row = {"name": name, "files": files, "mb": nbytes / 1e6, "cold": float(t1) - float(t0),
       "null": float(t2) - float(t1), "null2": float(t3) - float(t2), "ls": float(ls_s), "show": float(show_s), "gc": float(gc_s),
       "nodes": {k: {"wall": v["duration_s"], "cpu": v.get("cpu_s", 0), "rss_mb": v.get("peak_rss_kb", 0) / 1024}
                 for k, v in nodes.items()}}
print(json.dumps(row))
PY
    tail -1 "$RESULTS" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("%-6s %8d files %8.1f MB  cold %7.1f s  null %5.2f s, again %5.2f s  ls %4.2f s  show %4.2f s  gc %4.2f s" %
      (r["name"], r["files"], r["mb"], r["cold"], r["null"], r["null2"], r["ls"], r["show"], r["gc"]))
for k, v in r["nodes"].items():
    print("    %-4s wall %7.2f s  cpu %7.2f s  %7.1f MB/s  %9.0f files/s  peak %6.0f MB" %
          (k, v["wall"], v["cpu"], r["mb"] / max(v["wall"], 1e-3), r["files"] / max(v["wall"], 1e-3), v["rss_mb"]))'
    rm -rf "$T/c_$name"
}

for s in $SIZES; do
    d=$T/in_$s
    # SCALE_CORPORA: generated inputs are kept there (in_SIZE) and reused
    [ -n "${SCALE_CORPORA:-}" ] && d=$SCALE_CORPORA/in_$s
    if [ ! -d "$d" ]; then
        case $s in
            b*) python3 "$SRC/tests/bench/gen_corpus.py" bytes "$d" "${s#b}" "$L" ;;
            f*) n=${s#f}; n=${n%k}000
                python3 "$SRC/tests/bench/gen_corpus.py" files "$d" "$n" ;;
            *) echo "unknown size $s"; exit 2 ;;
        esac
        sleep 3     # files younger than 2 s are hashed but not stat-cached
    fi
    run_size "$s" "$d"
    [ -n "${SCALE_CORPORA:-}" ] || rm -rf "$d"
done

echo "---- targets"
python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def family(p):
    return sorted((r for r in rows if r["name"].startswith(p)), key=lambda r: r["files"])
ok = True
for p, unit, key in (("b", "MB", "mb"), ("f", "file", "files")):
    fam = family(p)
    if len(fam) < 2:
        continue
    lo, hi = fam[0], fam[-1]
    for node in lo["nodes"]:
        a = lo["nodes"][node]["wall"] / lo[key]
        b = hi["nodes"][node]["wall"] / hi[key]
        if lo["nodes"][node]["wall"] < 0.2:
            print("  %s: %-4s time per %s %s -> %s: too fast at %s to compare (%.2f s)" %
                  (p, node, unit, lo["name"], hi["name"], lo["name"], lo["nodes"][node]["wall"]))
            continue
        ratio = b / a
        good = ratio <= 1.5
        ok &= good
        # CPU time beside wall time: on a loaded machine the wall ratio
        # measures the load as much as the code
        ca = lo["nodes"][node]["cpu"] / lo[key]
        cb = hi["nodes"][node]["cpu"] / hi[key]
        print("  %s: %-4s time per %s at %s / at %s = %.2f (target <= 1.5) %s  (CPU time: %.2f)" %
              (p, node, unit, hi["name"], lo["name"], ratio, "ok" if good else "MISSED",
               cb / ca if ca > 0 else float("nan")))
for r in rows:
    if r["name"] == "b64":
        for node, v in r["nodes"].items():
            good = v["rss_mb"] < 1024
            ok &= good
            print("  b64: %-4s peak RSS %.0f MB (target < 1024) %s" % (node, v["rss_mb"], "ok" if good else "MISSED"))
    if r["name"] == "f500k":
        good = r["null2"] < 3
        ok &= good
        print("  f500k: null build %.2f s, again %.2f s (target < 3) %s" % (r["null"], r["null2"], "ok" if good else "MISSED"))
        for k in ("ls", "show", "gc"):
            good = r[k] < 2
            ok &= good
            print("  f500k: flow %s %.2f s (target < 2) %s" % (k, r[k], "ok" if good else "MISSED"))
sys.exit(0 if ok else 1)
PY
