#!/usr/bin/env bash
# text_e2e_test.sh — clean, split and terms through `flow build`:
#  1. a small generated labelled tree (headers, comments, articles with
#     items, duplicates, full-width text, invalid UTF-8, a binary file, law
#     versions sharing a group) with exact expectations;
#  2. failures: invalid_utf8 = reject names file and offset, empty corpus,
#     fewer groups than splits;
#  3. a slice of the shared legal corpus (two departments), when present.
# Needs $FLOW (set by ctest) and python3 (JSON parsing).
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init text-e2e
flowtest_need_python3

# ---- 1. generated tree ----------------------------------------------------
D=$T/tree
mkdir -p "$D/甲类" "$D/乙类" "$D/丙类"
law() {     # law FILE LABEL-WORD N  -> N articles with items
    local f=$1 w=$2 n=$3
    {
        printf '# 中华人民共和国%s法\n\n2020年1月1日 通过\n\n<!-- INFO END -->\n\n## 第一章 总则\n\n' "$w"
        for i in $(seq 1 "$n"); do
            printf '第%s条 %s事项第%s项应当依法办理，具体办法由国务院规定。\n\n' "$i" "$w" "$i"
            if [ $((i % 3)) -eq 0 ]; then
                printf '（一）%s甲款%s；\n\n（二）%s乙款%s。\n\n' "$w" "$i" "$w" "$i"
            fi
        done
        printf '第%s条 本法自公布之日起施行。\n' $((n + 1))
    } > "$f"
}
for lab in 甲类 乙类 丙类; do
    for k in 一 二 三 四 五; do law "$D/$lab/${lab}${k}法.md" "${lab}${k}" 6; done
done
# two versions of one law: one group; the common text is removed as duplicate
law "$D/甲类/甲类一法(2021-05-01).md" 甲类一 6
# full-width letters/digits, a comment, an invalid byte, a control char
printf '<!-- INFO END -->\n\n第一条　ＡＢＣ公司１２３号<!-- 注 -->登记\xff办法\x01规定。\n' > "$D/乙类/乙类特别法.md"
# a binary file: skipped and counted
printf 'PK\x03\x04\x00\x00binary' > "$D/丙类/附件.bin"
cat > "$T/terms.txt" <<'EOF'
# user terms
具体办法

具体办法
国务院规定
一个非常非常非常非常非常非常长的术语
EOF
printf '\xef\xbb\xbf%s' "$(cat "$T/terms.txt")" > "$T/terms.txt"

cat > "$T/t.graph" <<EOF
docs = source { path = "$D"  labels = folders }
user = source { path = "$T/terms.txt" }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 7 }
t = terms { corpus = s.train  user = [user]  min_freq = 3  top_k = 10  max_chars = 12 }
EOF

build() {   # build GRAPH CACHE [ARGS...] -> JSON events in $T/events
    local g=$1 c=$2; shift 2
    "$FLOW" build "$g" --cache "$c" --json "$@" > "$T/events" 2> "$T/stderr"
}

build "$T/t.graph" "$T/cache"
rc=$?
check "build of the generated tree succeeds (rc $rc: $(tail -3 "$T/stderr"))" test $rc -eq 0
check "18 documents (one binary)" test "$(metric "$T/events" c documents)" = 18
check "binary file skipped" test "$(metric "$T/events" c skipped_files)" = 1
check "one invalid sequence" test "$(metric "$T/events" c invalid_sequences)" = 1
check "control char dropped" test "$(metric "$T/events" c chars.dropped.control)" = 1
# 15 laws x 7 articles + 7 of the second version + 1 special article = 113;
# duplicates: 14 extra copies of 本法自公布之日起施行。 and the 7 articles
# of the version read second -> 92 units
check "units = 92 ($(metric "$T/events" c units))" test "$(metric "$T/events" c units)" = 92
check "duplicates = 21 ($(metric "$T/events" c duplicates))" test "$(metric "$T/events" c duplicates)" = 21
C=$(key "$T/events" c)
"$FLOW" log "$C" --cache "$T/cache" > "$T/clog" 2>&1
check "replaced invalid UTF-8 logged with file and offset ($(grep -m1 'invalid UTF-8' "$T/clog"))" \
    grep -q "invalid UTF-8 in '乙类/乙类特别法.md' at byte offset 76" "$T/clog"
"$FLOW" cat "$C" text --cache "$T/cache" > "$T/text"
"$FLOW" cat "$C" units --cache "$T/cache" > "$T/units"
"$FLOW" cat "$C" labels --cache "$T/cache" > "$T/labels"
check "labels part" test "$(tr '\n' ' ' < "$T/labels")" = "丙类 乙类 甲类 "
check "full-width normalised, comment/invalid/control removed" grep -qx 'ABC公司123号登记办法规定。' "$T/text"
check "items joined into their article" grep -qh '甲类三事项第3项应当依法办理，具体办法由国务院规定。（一）甲类三甲款3；（二）甲类三乙款3。' "$T/text"
check "article label stripped" test "$(grep -c '^第' "$T/text")" = 0
check "header is not body text" test "$(grep -c '通过' "$T/text")" = 0
check "text and units aligned" test "$(wc -l < "$T/text")" = "$(wc -l < "$T/units")"
# the version sorted first keeps 6 articles (its 本法自公布之日起施行。 was
# already seen in 丙类一法.md)
check "versions share a group" test "$(grep -c $'\t甲类一法\t' "$T/units")" = 6

S=$(key "$T/events" s)
for part in train dev test; do
    "$FLOW" cat "$S" $part/units --cache "$T/cache" | cut -f2 | sort -u > "$T/groups.$part"
    "$FLOW" cat "$S" $part/labels --cache "$T/cache" > "$T/labels.$part"
    check "$part labels = corpus labels" cmp -s "$T/labels.$part" "$T/labels"
done
check "no group in two splits" test -z "$(cat "$T"/groups.train "$T"/groups.dev "$T"/groups.test | sort | uniq -d)"
total=$(( $(metric "$T/events" s train.units) + $(metric "$T/events" s dev.units) + $(metric "$T/events" s test.units) ))
check "split keeps every unit ($total)" test $total = 92
for lab in 甲类 乙类 丙类; do
    for part in train dev test; do
        check "$lab present in $part" test "$(metric "$T/events" s $part.groups.$lab)" -ge 1
    done
done
"$FLOW" cat "$S" train/text --cache "$T/cache" > "$T/train1"

check "user terms: 2 kept" test "$(metric "$T/events" t user_terms)" = 2
check "user terms: 1 duplicate" test "$(metric "$T/events" t user_duplicates)" = 1
check "user terms: 1 too long" test "$(metric "$T/events" t user_too_long)" = 1
TK=$(key "$T/events" t)
"$FLOW" cat "$TK" terms --cache "$T/cache" > "$T/terms.out"
check "user terms first" test "$(head -2 "$T/terms.out" | tr '\n' ' ')" = "具体办法 国务院规定 "
"$FLOW" cat "$TK" ranked.tsv --cache "$T/cache" | head -1 > "$T/ranked.head"
check "ranked.tsv header" grep -qx $'term\tscore\tfreq\tpmi\tleft_entropy\tright_entropy' "$T/ranked.head"

# determinism: same seed on a fresh cache gives the same split; another seed may not
build "$T/t.graph" "$T/cache2"
"$FLOW" cat "$(key "$T/events" s)" train/text --cache "$T/cache2" > "$T/train2"
check "split is deterministic" cmp -s "$T/train1" "$T/train2"
build "$T/t.graph" "$T/cache2" --set s.seed=8
check "another seed builds" test "$(metric "$T/events" s train.units)" != missing

# ---- 2. failures ----------------------------------------------------------
build "$T/t.graph" "$T/cache" --set c.invalid_utf8=reject
check "reject fails the build" test $? -ne 0
check "reject names file and offset ($(grep -o 'document[^"]*' "$T/events" | head -1))" \
    grep -qh '乙类/乙类特别法.md.*invalid UTF-8 at byte offset 76' "$T/events" "$T/stderr"
build "$T/t.graph" "$T/cache" --set c.binary=reject c
check "binary = reject fails naming the file" grep -qh '附件.bin.*NUL byte at offset 4' "$T/events" "$T/stderr"
mkdir -p "$T/empty/x"
printf '<!-- INFO END -->\n\n短\n' > "$T/empty/x/a.md"
cat > "$T/e.graph" <<EOF
docs = source { path = "$T/empty"  labels = folders }
c = clean { input = docs }
s = split { corpus = c }
EOF
build "$T/e.graph" "$T/cache" c
check "empty corpus fails clearly" grep -qh 'empty corpus' "$T/events" "$T/stderr"
printf '<!-- INFO END -->\n\n足够长的一段正文内容。\n' > "$T/empty/x/a.md"
build "$T/e.graph" "$T/cache"
check "1 group cannot fill 3 splits" grep -qh '1 groups cannot fill 3 splits' "$T/events" "$T/stderr"

# invalid = replace: at most 20 sequences listed, then a count
mkdir -p "$T/bad/x"
for i in $(seq 1 12); do printf '<!-- INFO END -->\n\n第一条 足够长的\xff一段\xfe正文内容%s。\n' $i > "$T/bad/x/y$i.md"; done
printf 'd = source { path = "%s"  labels = folders }\nc = clean { input = d }\n' "$T/bad" > "$T/bad.graph"
build "$T/bad.graph" "$T/cache"
"$FLOW" log "$(key "$T/events" c)" --cache "$T/cache" > "$T/blog" 2>&1
check "24 invalid sequences counted" test "$(metric "$T/events" c invalid_sequences)" = 24
check "20 invalid sequences listed ($(grep -c 'invalid UTF-8 in' "$T/blog"))" test "$(grep -c 'invalid UTF-8 in' "$T/blog")" = 20
check "the rest counted" grep -q '4 more invalid UTF-8 sequences in 2 file(s) not listed' "$T/blog"

# split names what is missing: a corpus with units but no labels, and one
# with no units at all (made by exec, since clean refuses an empty corpus)
cat > "$T/nl.graph" <<EOF
docs = source { path = "$D/甲类" }
c = clean { input = docs }
s = split { corpus = c }
EOF
build "$T/nl.graph" "$T/cache"
check "split of an unlabelled corpus says 'no labels' ($(grep -oh 'the corpus has[^"]*' "$T/events" "$T/stderr" | head -1))" \
    grep -qh 'the corpus has [0-9]* units but no labels' "$T/events" "$T/stderr"
mkdir -p "$T/nu"
: > "$T/nu/text"; : > "$T/nu/units"; : > "$T/nu/labels"
printf '{"format":"flow-corpus","version":1}' > "$T/nu/corpus.json"
printf 'c = exec { command = "cp %s/* ."  outputs = ["text", "units", "labels", "corpus.json"] }\ns = split { corpus = c }\n' \
    "$T/nu" > "$T/nu.graph"
build "$T/nu.graph" "$T/cache"
check "split of an empty corpus says 'no units' ($(grep -oh 'the corpus has[^"]*' "$T/events" "$T/stderr" | head -1))" \
    grep -qh 'the corpus has no units' "$T/events" "$T/stderr"

# corpus.json: the corpus format marker every reader validates.  Corpora
# made by exec nodes (copied from $T/corpN): none, too old, too new, valid.
mk_corpus() {   # mk_corpus N [CORPUS.JSON]
    mkdir -p "$T/corp$1"
    printf '第一条 足够长的正文。\n第二条 另一段正文。\n第三条 再一段正文。\n' > "$T/corp$1/text"
    printf '甲\tg1\ta.md\n甲\tg2\tb.md\n甲\tg3\tc.md\n' > "$T/corp$1/units"
    printf '甲\n' > "$T/corp$1/labels"
    local outs='"text", "units", "labels"'
    if [ $# -gt 1 ]; then printf '%s' "$2" > "$T/corp$1/corpus.json"; outs="$outs, \"corpus.json\""; fi
    printf 'c = exec { command = "cp %s/* ."  outputs = [%s] }\ns = split { corpus = c }\n' \
        "$T/corp$1" "$outs" > "$T/corp$1.graph"
    build "$T/corp$1.graph" "$T/cache"
}
mk_corpus 0
check "a corpus without corpus.json is refused as older" \
    grep -qh 'units has no corpus.json beside it: the corpus was written by an older flow' "$T/events" "$T/stderr"
mk_corpus 1 '{"format":"flow-corpus","version":0}'
check "corpus format version 0 refused as too old" \
    grep -qh 'corpus format version 0 is too old' "$T/events" "$T/stderr"
mk_corpus 2 '{"format":"flow-corpus","version":2}'
check "corpus format version 2 refused as too new" \
    grep -qh 'corpus format version 2 is newer than this flow reads (1..1): update flow' "$T/events" "$T/stderr"
mk_corpus 3 '{"format":"flow-corpus","version":1}'
check "a valid exec-made corpus splits ($(grep -oh 'error[^"]*' "$T/events" "$T/stderr" | head -1))" \
    test "$(metric "$T/events" s units)" = 3
for part in train dev test; do
    check "split writes $part/corpus.json" \
        test "$("$FLOW" cat "$(key "$T/events" s)" $part/corpus.json --cache "$T/cache")" = '{"format":"flow-corpus","version":1}'
done
check "clean writes corpus.json" test "$("$FLOW" cat "$C" corpus.json --cache "$T/cache")" = '{"format":"flow-corpus","version":1}'

# ---- 3. shared corpus slice ----------------------------------------------
L=${FLOW_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}/legal
if [ -d "$L/laws/刑法" ]; then
    cat > "$T/l.graph" <<EOF
laws = source { path = "$L/laws"  labels = folders  include = ["刑法/*", "诉讼与非诉讼程序法/*"] }
user = source { path = "$L/terms.txt" }
c = clean { input = laws }
s = split { corpus = c }
t = terms { corpus = s.train  user = [user] }
EOF
    build "$T/l.graph" "$T/cache"
    check "legal slice builds ($(tail -2 "$T/stderr"))" test $? -eq 0
    check "legal slice: 2 labels" test "$(metric "$T/events" c labels)" = 2
    check "legal slice: > 1000 units ($(metric "$T/events" c units))" test "$(metric "$T/events" c units)" -gt 1000
    check "legal slice: mostly articles" test "$(metric "$T/events" c units.articles)" -gt 1000
    S=$(key "$T/events" s)
    for part in train dev test; do
        "$FLOW" cat "$S" $part/units --cache "$T/cache" | cut -f2 | sort -u > "$T/lg.$part"
    done
    check "legal slice: no group in two splits" test -z "$(cat "$T"/lg.* | sort | uniq -d)"
    check "legal slice: terms mined" test "$(metric "$T/events" t candidates)" -gt 100
    check "legal slice: 95 user terms" test "$(metric "$T/events" t user_terms)" = 95
    echo "legal slice: units $(metric "$T/events" c units), train $(metric "$T/events" s train.units), dev $(metric "$T/events" s dev.units)," \
         "test $(metric "$T/events" s test.units), user_terms_in_top_k $(metric "$T/events" t user_terms_in_top_k)"
else
    echo "SKIP-PART: text_e2e_test:shared-corpus: $L/laws/刑法 not found (set FLOW_DATA)"
fi

if [ $fail -ne 0 ]; then echo "text_e2e_test: FAILED"; exit 1; fi
echo "text_e2e_test: all checks passed"
