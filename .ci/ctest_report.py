#!/usr/bin/env python3
"""ctest_report.py JUNIT_XML — what CI skipped, and whether it may.

Reads the JUnit file that `ctest --output-junit` wrote.  A skipped test
(exit 77) or a skipped part of a test (a line "SKIP-PART: TEST:PART: reason"
in its output) must match .ci/skips-allowed; any other skip fails the run
(exit 1), since a green CI that skipped a cross-check proves nothing.
Prints one summary line of what was skipped, and the wall time of the
tests named in TIMED (the PyTorch/transformers and fuzz tests), which must
keep the suite under 20 minutes on 2 cores.
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

TIMED = ("bert_torch_test", "export_hf_test", "onnx_export_test", "fuzz_test")
here = os.path.dirname(os.path.abspath(__file__))
allowed = {}
for line in open(os.path.join(here, "skips-allowed"), encoding="utf-8"):
    if line.strip() and not line.startswith("#"):
        pat, _, why = line.rstrip("\n").partition("\t")
        allowed[pat.strip()] = why.strip()


def allowed_reason(test, part=None):
    if part is not None:
        return allowed.get("%s:%s" % (test, part))
    if "_gpu" in test and "label:gpu" in allowed:
        return allowed["label:gpu"]
    return allowed.get(test)


root = ET.parse(sys.argv[1]).getroot()
skipped, bad, times, total = [], [], {}, 0.0
for tc in root.iter("testcase"):
    name = tc.get("name")
    t = float(tc.get("time") or 0)
    total += t
    if name in TIMED:
        times[name] = t
    out = (tc.findtext("system-out") or "")
    if tc.find("skipped") is not None:
        lines = [l for l in out.splitlines() if l.strip()]
        reason = lines[-1].strip() if lines else "exit 77"
        ok = allowed_reason(name)
        (skipped if ok else bad).append("%s (%s)" % (name, ok or reason))
    for m in re.finditer(r"^SKIP-PART: ([^:\s]+):([^:\s]+): (.*)$", out, re.M):
        test, part, reason = m.group(1), m.group(2), m.group(3).strip()
        ok = allowed_reason(test, part)
        (skipped if ok else bad).append("%s:%s (%s)" % (test, part, ok or reason))

print("ci: skipped %d allowed: %s; %d not allowed: %s" % (
    len(skipped), "; ".join(skipped) or "none", len(bad), "; ".join(bad) or "none"))
print("ci: wall time %s; all tests %.0f s (summed over parallel slots)" % (
    ", ".join("%s %.0f s" % (n, times[n]) if n in times else "%s not run" % n for n in TIMED), total))
missing = [n for n in TIMED if n not in times]
if bad or missing:
    print("ci: FAIL: %s" % ("skips not on .ci/skips-allowed (install what they need in .ci/setup --test)"
                            if bad else "tests missing from the run: " + ", ".join(missing)))
    sys.exit(1)
