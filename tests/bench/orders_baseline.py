#!/usr/bin/env python3
"""orders_baseline.py: plain-Python equivalent of pipelines/orders.yaml.

Usage: orders_baseline.py INPUT DB_PATH [TABLE]   (TABLE defaults to
       "per_customer")

Reads JSON Lines with the json module, keeps records where
status == "paid" and amount > 10, aggregates sum(amount) and count per
customer, then upserts TABLE(customer TEXT PRIMARY KEY, sum REAL,
count INTEGER) with sqlite3 in one transaction. Same semantics as
orders_baseline.cc; this is the "what a script would do" reference point.
"""

import json
import re
import sqlite3
import sys


def main(argv):
    if len(argv) not in (3, 4):
        print(f"usage: {argv[0]} INPUT DB_PATH [TABLE]", file=sys.stderr)
        return 2
    input_path, db_path = argv[1], argv[2]
    table = argv[3] if len(argv) == 4 else "per_customer"
    if not re.fullmatch(r"[A-Za-z0-9_]+", table):
        print(f"bad table name: {table}", file=sys.stderr)
        return 2

    totals = {}  # customer -> [sum, count]
    loads = json.loads
    with open(input_path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            e = loads(line)
            status = e.get("status")
            amount = e.get("amount")
            if (status == "paid" and isinstance(amount, (int, float))
                    and not isinstance(amount, bool) and amount > 10):
                t = totals.get(e["customer"])
                if t is None:
                    totals[e["customer"]] = [float(amount), 1]
                else:
                    t[0] += amount
                    t[1] += 1

    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute(f'CREATE TABLE IF NOT EXISTS {table} '
                '(customer TEXT PRIMARY KEY, "sum" REAL, "count" INTEGER)')
    con.execute("BEGIN")
    con.executemany(
        f'INSERT INTO {table} (customer, "sum", "count") VALUES (?, ?, ?) '
        'ON CONFLICT(customer) DO UPDATE SET '
        '"sum" = excluded."sum", "count" = excluded."count"',
        ((c, t[0], t[1]) for c, t in totals.items()))
    con.execute("COMMIT")
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
