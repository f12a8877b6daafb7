#!/usr/bin/env python3
"""Regenerates testdata/golden.json from testdata/golden-requests.json with `switchyard eval`.

The result is an expectation file: review every changed expectation by hand against the
contract before committing it. Usage: cargo build -p switchyard-policy && tools/regen-golden.py
"""
import json
import pathlib
import subprocess

root = pathlib.Path(__file__).resolve().parent.parent
spec = json.loads((root / "testdata/golden-requests.json").read_text())
cli = root / "target/debug/switchyard"
cases = []
for case in spec["cases"]:
    policy = root / spec["policies"][case["policy"]]
    out = subprocess.run([str(cli), "eval", str(policy)], input=json.dumps(case["request"]) + "\n",
                         capture_output=True, text=True, check=True).stdout
    cases.append({**case, "expect": json.loads(out)})
golden = {"about": spec["about"].replace("Inputs for golden.json. ", ""), "policies": spec["policies"], "cases": cases}
(root / "testdata/golden.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
print(f"{len(cases)} cases written")
