#!/usr/bin/env python3
"""report_data.py OUT — the small labelled corpus of the report tests
(tests/report_*_test.sh): OUT/train/<label>/<law>.md (3 departments x 6
laws x 8 articles, each department with its own vocabulary) and
OUT/test/<label>/<law>.md (3 x 2 laws x 6 articles, every article unique;
every third one carries a character the training text never has, so the
tokenizer's coverage of the test text is below 100%)."""
import os, random, sys

random.seed(23)
root = sys.argv[1]
common = "的和或者应当依法规定本法国家人员"
classes = {"甲类": "税收财政预算银行货币价格审计统计会计金融",
           "乙类": "刑罚犯罪判处徒刑拘役罚金没收自首缓刑剥夺",
           "丙类": "婚姻家庭继承收养合同物权抵押债务赔偿侵权"}
rare = "龘齉爩"
num = "一二三四五六七八九十"
seen = set()


def article(chars, with_rare):
    while True:
        n = random.randint(12, 40)
        s = "".join(random.choice(chars) if random.random() < 0.7 else random.choice(common)
                    for _ in range(n))
        if with_rare:
            k = random.randrange(len(s))
            s = s[:k] + random.choice(rare) + s[k:]
        if s not in seen:
            seen.add(s)
            return s


for split, laws, arts in (("train", 6, 8), ("test", 2, 6)):
    for lab, chars in classes.items():
        d = os.path.join(root, split, lab)
        os.makedirs(d, exist_ok=True)
        for k in range(laws):
            with open(os.path.join(d, "%s%s法%d.md" % (lab, split, k)), "w") as f:
                f.write("# %s法%d\n\n<!-- INFO END -->\n\n" % (lab, k))
                for i in range(arts):
                    f.write("第%s条 %s。\n\n" % (num[i], article(chars, split == "test" and i % 3 == 2)))
