#!/bin/bash
# fuzz_test.sh — builds tests/fuzz/parse_fuzz.c with libFuzzer (clang,
# -fsanitize=fuzzer,address,undefined) and fuzzes the graph parser and
# resolver for ~20 s from the seeds in tests/fuzz/seeds.  Exit 77 (skip)
# when clang or its libFuzzer runtime is missing.  A long run: see
# README.md ("Fuzzing the graph language").
set -u
SRC=${FLOW_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
SECONDS_TO_RUN=${FUZZ_SECONDS:-20}
CC=""
for c in clang-14 clang; do command -v "$c" > /dev/null && { CC=$c; break; }; done
[ -n "$CC" ] || { echo "fuzz_test: no clang; skipping"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-fuzz-XXXXXX")
trap 'rm -rf "$T"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' > "$T/probe.c"
if ! "$CC" -fsanitize=fuzzer "$T/probe.c" -o "$T/probe" 2> "$T/probe.err"; then
    echo "fuzz_test: $CC cannot link libFuzzer (install libclang-rt-dev); skipping"
    cat "$T/probe.err" | head -3
    exit 77
fi
BUILD=${FLOW_BUILD:-$SRC/build}
XXH=$(grep -m1 '^XXHASH_INCLUDE:' "$BUILD/CMakeCache.txt" 2>/dev/null | cut -d= -f2)
CFLAGS="-std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Wall -Wextra -Werror -I$SRC ${XXH:+-I$XXH}"
# The flow sources the fuzzer needs: the closure of what parse_fuzz.c calls
# over the built libraries' objects (tests/tools/link_closure.py), so a file
# that moves or splits is followed without editing this script.
if ! "$CC" -c $CFLAGS "$SRC/tests/fuzz/parse_fuzz.c" -o "$T/parse_fuzz.o" 2> "$T/build.err" ||
   ! python3 "$SRC/tests/tools/link_closure.py" "$BUILD" "$T/parse_fuzz.o" > "$T/sources" 2>> "$T/build.err" ||
   ! [ -s "$T/sources" ]; then
    echo "fuzz_test: finding the fuzzer's sources in $BUILD failed:"; cat "$T/build.err"; exit 1
fi
mapfile -t FSRC < <(sed "s|^|$SRC/|" "$T/sources")
echo "fuzz_test: sources: $(tr '\n' ' ' < "$T/sources")"
if ! "$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        $CFLAGS "$SRC/tests/fuzz/parse_fuzz.c" "${FSRC[@]}" \
        -o "$T/parse_fuzz" 2> "$T/build.err"; then
    echo "fuzz_test: building the fuzzer failed:"; cat "$T/build.err"; exit 1
fi
mkdir -p "$T/corpus" "$T/tmp"
cd "$T"
# the target rewrites one small file per input: keep it in memory if we can
FTMP=$T/tmp
if [ -d /dev/shm ] && [ -w /dev/shm ] && S=$(mktemp -d /dev/shm/flow-fuzz-XXXXXX); then
    FTMP=$S
    trap 'rm -rf "$T" "$S"' EXIT
fi
TMPDIR=$FTMP ASAN_OPTIONS=detect_leaks=1 "$T/parse_fuzz" -max_total_time="$SECONDS_TO_RUN" \
    -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
    -dict="$SRC/tests/fuzz/graph.dict" "$T/corpus" "$SRC/tests/fuzz/seeds" > "$T/fuzz.log" 2>&1
rc=$?
grep -E "stat::number_of_executed_units|stat::peak_rss|cov:" "$T/fuzz.log" | tail -3
if [ $rc -ne 0 ]; then
    echo "fuzz_test: the fuzzer found a problem (exit $rc):"
    grep -vE '^#[0-9]+' "$T/fuzz.log" | tail -60
    for f in "$T"/crash-* "$T"/leak-* "$T"/timeout-* "$T"/oom-*; do
        [ -e "$f" ] && { echo "input $f (base64):"; base64 "$f" | head -20; }
    done
    exit 1
fi
# a fuzzer that exits 0 without running inputs proves nothing
units=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/fuzz.log" | tail -1)
if [ -z "$units" ] || [ "$units" -lt 1000 ]; then
    echo "fuzz_test: only '${units:-no}' inputs executed in ${SECONDS_TO_RUN}s"; tail -20 "$T/fuzz.log"; exit 1
fi
echo "fuzz_test: ${SECONDS_TO_RUN}s of fuzzing, $units inputs, no crash, $(ls "$T/corpus" | wc -l) corpus entries"
exit 0
