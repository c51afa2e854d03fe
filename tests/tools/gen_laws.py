#!/usr/bin/env python3
"""gen_laws.py ROOT SEED — the small generated law corpus the end-to-end
tests train on: 3 departments (folders) x 6 laws x 8 articles, each class
with its own characters, so a model can learn the labels in a few steps."""
import os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
random.seed(seed)
common = "的和或者应当依法规定本法国家人员"
classes = {"甲类": "税收财政预算银行货币价格审计统计会计金融",
           "乙类": "刑罚犯罪判处徒刑拘役罚金没收自首缓刑剥夺",
           "丙类": "婚姻家庭继承收养合同物权抵押债务赔偿侵权"}
num = "一二三四五六七八九十"
for lab, chars in classes.items():
    os.makedirs(os.path.join(root, lab), exist_ok=True)
    for k in range(6):
        with open(os.path.join(root, lab, "%s法%d.md" % (lab, k)), "w") as f:
            f.write("# %s法%d\n\n<!-- INFO END -->\n\n" % (lab, k))
            for i in range(8):
                n = random.randint(12, 40)
                s = "".join(random.choice(chars) if random.random() < 0.7 else random.choice(common) for _ in range(n))
                f.write("第%s条 %s。\n\n" % (num[i], s))
