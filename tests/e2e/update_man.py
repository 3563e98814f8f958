#!/usr/bin/env python3
"""Regenerates the node reference of man/onceflow-pipeline.5 from the option tables
(`onceflow operators man`), between the BEGIN/END NODE REFERENCE markers.

Usage: update_man.py ONCEFLOW_BINARY
"""
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
page_path = os.path.join(root, "man", "onceflow-pipeline.5")
section = subprocess.run([sys.argv[1], "operators", "man"], check=True, capture_output=True,
                         text=True).stdout
begin, end = ".\\\" BEGIN NODE REFERENCE\n", ".\\\" END NODE REFERENCE\n"
page = open(page_path).read()
head, rest = page.split(begin)
_, tail = rest.split(end)
with open(page_path, "w") as f:
    f.write(head + begin + section + end + tail)
print(f"updated {page_path}")
