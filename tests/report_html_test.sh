#!/usr/bin/env bash
# report_html_test.sh — report.html in headless Chromium (Debian's
# `chromium`, installed by .ci/setup --test): built from a small graph
# (tests/tools/report_data.py: two baselines, a tiny pretrain + finetune
# as the teacher), then
#  - the page has no script and references nothing outside itself;
#  - opened through the DevTools protocol (tests/tools/html_check.py): no
#    console error or warning, no failed load, 7 SVGs (2 loss curves, 1 dev
#    curve, Pareto, F1 bars, 2 confusion heat maps) each with drawn marks,
#    and a screenshot that is not blank (kept as $FLOW_BUILD/report_html_test.png);
#  - the checker itself flags a blank page and a page with a console error
#    and a failed load (so this test can fail).
# Exit 77 when Chromium or python3 is missing.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init report-html
flowtest_need_python3
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || { echo "skip: chromium is not installed (.ci/setup --test installs it)"; exit 77; }
python3 "$SRC/tests/tools/report_data.py" "$T/data"
cat > "$T/h.graph" <<GRAPH
docs = source { path = "$T/data/train"  labels = folders }
tdocs = source { path = "$T/data/test"  labels = folders }
c = clean { input = docs }
tc = clean { input = tdocs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
cov = coverage { corpus = tc  tokenizer = tok }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 32  layers = 1  heads = 2
                intermediate = 64  max_len = 32  batch = 8  max_steps = 20  dev_max = 50  lr = 0.001 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 40
                lr = 0.003  eval_every = 10 }
base = baseline { train = s.train  dev = s.dev  test = s.test  clean = c  hash_bits = 14 }
base2 = baseline { train = s.train  dev = s.dev  test = s.test  clean = c  hash_bits = 12 }
rep = report { models = [base, base2]  teacher = ft  test = tc  training = [pt, ft]  coverage = cov
               final = base2  gates = warn  timing_units = 8 }
GRAPH
"$FLOW" build "$T/h.graph" --cache "$T/C" -j 2 > "$T/build.out" 2>&1; rc=$?
check "build succeeds (rc $rc): $(tail -3 "$T/build.out")" test $rc -eq 0
page=$("$FLOW" report "$T/h.graph" --open -o "$T/report.html" --cache "$T/C")
check "flow report --open writes the page ($page)" test -s "$T/report.html"
check "no script on the page" bash -c "! grep -qi '<script' '$T/report.html'"
check "no external reference (src=, href=, url(, @import, http other than the SVG namespace)" bash -c "
    ! grep -Eqi 'src=|href=|url\\(|@import' '$T/report.html' &&
    ! grep -o 'https\\?://[^\"]*' '$T/report.html' | grep -vqx 'http://www.w3.org/2000/svg'"
check "best and final heat maps are both drawn" grep -q "base (best macro-F1)" "$T/report.html"
shot=${FLOW_BUILD:-$T}/report_html_test.png
timeout 120 python3 "$SRC/tests/tools/html_check.py" "$CHROMIUM" "$T/report.html" "$shot" --expect-svgs 7 > "$T/check.out" 2>&1; rc=$?
cat "$T/check.out"
check "the page passes in Chromium (rc $rc)" test $rc -eq 0
# negative controls: the checker must catch what it looks for
printf '<!DOCTYPE html><html><body></body></html>\n' > "$T/blank.html"
timeout 120 python3 "$SRC/tests/tools/html_check.py" "$CHROMIUM" "$T/blank.html" "$T/blank.png" > "$T/blank.out" 2>&1
check "the checker flags a blank page" grep -q "looks blank" "$T/blank.out"
printf '<!DOCTYPE html><html><body><svg width="50" height="50"><rect width="50" height="50" fill="#fff"/></svg><script>console.error("boom")</script><img src="missing.png"></body></html>\n' > "$T/bad.html"
timeout 120 python3 "$SRC/tests/tools/html_check.py" "$CHROMIUM" "$T/bad.html" "$T/bad.png" > "$T/bad.out" 2>&1
check "the checker flags a console error" grep -q "console error: boom" "$T/bad.out"
check "the checker flags a failed load" grep -q "Failed to load resource" "$T/bad.out"
check "the checker flags an SVG without marks" grep -q "SVG 1 has no drawn data marks" "$T/bad.out"
exit $fail
