#!/usr/bin/env python3
"""An `exec` operator for onceflow (SPEC §5), used by pipelines/enrich.yaml.

Reads one JSON record per line on stdin and answers each with exactly one line on
stdout: a JSON array of the records it emits for it. Paid orders come back with a size
band and the amount in cents; other orders are dropped (an empty array). Logging goes to
stderr, which onceflow forwards to its own log. Answers are flushed line by line: onceflow
waits for them, so a block-buffered answer would never arrive.
"""
import json
import sys


def enrich(order):
    if order.get("status") != "paid":
        return []
    amount = order["amount"]
    band = "small" if amount < 50 else "medium" if amount < 150 else "large"
    return [dict(order, band=band, amount_cents=round(amount * 100))]


def main():
    print("enrich: ready", file=sys.stderr, flush=True)
    for line in sys.stdin:
        sys.stdout.write(json.dumps(enrich(json.loads(line)), separators=(",", ":")) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
