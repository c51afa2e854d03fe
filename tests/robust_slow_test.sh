#!/bin/bash
# robust_slow_test.sh — robust_test.sh with the 50 MB single line sent down
# the whole pipeline (clean, split, terms, bpe, encode, coverage, pretrain,
# finetune, baseline, evaluate), not only to the text entry stages.
ROBUST_FULL=1 exec bash "$(dirname "$0")/robust_test.sh"
