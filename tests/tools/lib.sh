# tests/tools/lib.sh — the shared preamble of the end-to-end shell tests
# (tests/*_test.sh), sourced first thing:
#
#   . "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
#   flowtest_init NAME          # $FLOW, SRC, T, fail, check
#   flowtest_need_python3       # or flowtest_need_python MODULE...
#   flowtest_need_hooks         # HOOKED = $FLOW_BUILD/flow_testhooks
#   ...
#   exit $fail
#
# ctest sets FLOW (the flow binary), FLOW_SRC, FLOW_BUILD and FLOW_DATA
# (CMakeLists.txt).  A tool the test cannot do without and that CI installs
# (python3, numpy...) missing is a skip (exit 77, which .ci/run counts
# against its list of allowed skips); a file the build itself makes
# (flow_testhooks) missing is a failure.

# flowtest_init NAME: checks $FLOW, sets SRC (the source tree), T (a fresh
# temporary folder flow-NAME-XXXXXX, removed at exit unless KEEP is set)
# and fail=0.  A test whose exit trap does more sets its own after this.
flowtest_init() {
    FLOW=${FLOW:-}
    if [ -z "$FLOW" ] || [ ! -x "$FLOW" ]; then echo "skip: \$FLOW is not an executable"; exit 77; fi
    SRC=${FLOW_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
    T=$(mktemp -d "${TMPDIR:-/tmp}/flow-$1-XXXXXX")
    trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
    fail=0
}

# flowtest_need_python3: python3 on the PATH, else skip.
flowtest_need_python3() {
    command -v python3 >/dev/null || { echo "skip: python3 missing"; exit 77; }
}

# flowtest_need_python MODULE...: python3 with these modules, else skip.
flowtest_need_python() {
    local imports
    imports=$(IFS=,; echo "$*")
    python3 -c "import $imports" 2>/dev/null || { echo "skip: python3 $(IFS=/; echo "$*") missing"; exit 77; }
}

# flowtest_need_hooks: HOOKED = flow_testhooks, the same program as $FLOW
# plus the FLOW_TEST_KILL_AT hook (tests/hooks/kill_at.c) that `flow` lacks.
flowtest_need_hooks() {
    HOOKED=${FLOW_BUILD:-}/flow_testhooks
    if [ -z "${FLOW_BUILD:-}" ] || [ ! -x "$HOOKED" ]; then echo "FAIL: $HOOKED is not built"; exit 1; fi
}

# check "what" CONDITION...: runs CONDITION; on failure says what and sets fail.
check() {
    local what=$1; shift
    if "$@"; then :; else echo "FAIL: $what"; fail=1; fi
}

# build GRAPH CACHE EVENTS [ARGS...]: flow build with JSON events in EVENTS
# and stderr in EVENTS.stderr; the binary is $BIN (default $FLOW), the jobs
# $JOBS (default 2).
build() {
    local g=$1 c=$2 e=$3; shift 3
    "${BIN:-$FLOW}" build "$g" --cache "$c" --json -j "${JOBS:-2}" "$@" > "$e" 2> "$e.stderr"
}

# event_field EVENTS NODE FIELD: FIELD of NODE's "finished" event in EVENTS
# (objects and lists as JSON), from the first such event.
event_field() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    if e.get("event") == "finished" and e.get("node") == sys.argv[2]:
        v = e.get(sys.argv[3])
        print(json.dumps(v) if isinstance(v, (dict, list)) else v)
        break
PY
}

# key EVENTS NODE: the key of NODE's "finished" event in EVENTS.
key() { event_field "$1" "$2" key; }

# metric EVENTS NODE NAME: one metric of NODE's "finished" event, or
# "missing".
metric() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    if e.get("event") == "finished" and e.get("node") == sys.argv[2]:
        print(e.get("metrics", {}).get(sys.argv[3], "missing"))
        break
PY
}

# same_parts REF CACHE "PART..." KEY...: each KEY's PARTs in CACHE equal
# those in the reference cache REF, byte for byte; says which one differs.
same_parts() {
    local ref=$1 c=$2 parts=$3 k p; shift 3
    for k in "$@"; do
        for p in $parts; do
            "$FLOW" cat "$k" "$p" --cache "$ref" > "$T/ref.part" 2>/dev/null || { echo "  $ref: no $k $p"; return 1; }
            "$FLOW" cat "$k" "$p" --cache "$c" > "$T/got.part" 2>/dev/null || { echo "  $c: no $k $p"; return 1; }
            cmp -s "$T/ref.part" "$T/got.part" || { echo "  $c: $k $p differs"; return 1; }
        done
    done
}
