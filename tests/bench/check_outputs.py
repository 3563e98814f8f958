#!/usr/bin/env python3
"""check_outputs.py: correctness check used by tests/bench/run.sh.

  check_outputs.py words REFERENCE.jsonl OTHER [--format jsonl|mawk]
      Compares two word-count outputs as sets of (word, count). JSONL lines
      are read by field name ({"word": .., "count": ..}), so key order,
      spacing and extra fields do not matter; `mawk` is "word count" per line.
  check_outputs.py orders REFERENCE.db OTHER.db
      Compares the per-customer tables of two SQLite files on
      (customer, count, round(sum, 6)). The table is the one with a `customer`
      column; the sum column is `sum` or `sum_*`, the count column `count`,
      `count_*` or `n`.

Prints one line, "agree: ..." or "MISMATCH: ..." (with a few examples), and
exits 0 when the outputs agree, 1 otherwise.
"""

import json
import sqlite3
import sys

MAX_EXAMPLES = 5


class CheckError(Exception):
    pass


def load_words_jsonl(path):
    counts = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                word, count = rec["word"], rec["count"]
            except (ValueError, KeyError, TypeError) as e:
                raise CheckError(f"{path}:{line_no}: not a word-count record ({e}): "
                                 f"{line.strip()[:80]}")
            if word in counts:
                raise CheckError(f"{path}:{line_no}: word {word!r} appears twice "
                                 "(expected one final record per word)")
            counts[word] = int(count)
    return counts


def load_words_mawk(path):
    counts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            word, count = line.rsplit(" ", 1)
            counts[word] = int(count)
    return counts


def diff_maps(ref, other, what):
    """Returns None when equal, else a one-line description of the difference."""
    if ref == other:
        return None
    missing = [k for k in ref if k not in other]
    extra = [k for k in other if k not in ref]
    changed = [k for k in ref if k in other and ref[k] != other[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} {what} missing, e.g. " +
                     ", ".join(f"{k!r}={ref[k]}" for k in sorted(missing)[:MAX_EXAMPLES]))
    if extra:
        parts.append(f"{len(extra)} extra, e.g. " +
                     ", ".join(f"{k!r}={other[k]}" for k in sorted(extra)[:MAX_EXAMPLES]))
    if changed:
        parts.append(f"{len(changed)} differ, e.g. " +
                     ", ".join(f"{k!r}: {ref[k]} vs {other[k]}"
                               for k in sorted(changed)[:MAX_EXAMPLES]))
    return "; ".join(parts)


def check_words(argv):
    fmt = "jsonl"
    if len(argv) == 4 and argv[2] == "--format":
        fmt = argv[3]
        argv = argv[:2]
    if len(argv) != 2 or fmt not in ("jsonl", "mawk"):
        raise CheckError("usage: check_outputs.py words REF.jsonl OTHER [--format jsonl|mawk]")
    ref = load_words_jsonl(argv[0])
    other = load_words_jsonl(argv[1]) if fmt == "jsonl" else load_words_mawk(argv[1])
    problem = diff_maps(ref, other, "words")
    if problem:
        return f"MISMATCH: {problem}"
    return (f"agree: {len(ref):,} distinct words, "
            f"{sum(ref.values()):,} words in total")


def pick_column(columns, exact, prefix):
    for name in exact:
        if name in columns:
            return name
    for name in columns:
        if prefix and name.startswith(prefix):
            return name
    return None


def load_orders(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        seen = []
        for table in tables:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
            seen.append(f"{table}({', '.join(cols)})")
            if "customer" not in cols:
                continue
            sum_col = pick_column(cols, ["sum"], "sum_")
            count_col = pick_column(cols, ["count", "n"], "count_")
            if sum_col is None or count_col is None:
                continue
            rows = con.execute(
                f'SELECT customer, "{count_col}", "{sum_col}" FROM "{table}"').fetchall()
            result = {}
            for customer, count, total in rows:
                if customer in result:
                    raise CheckError(f"{path}: customer {customer!r} appears twice in {table}")
                result[customer] = (int(count), round(float(total), 6))
            return result, f"{table}(customer, {count_col}, {sum_col})"
        raise CheckError(f"{path}: no table with columns customer, sum|sum_*, "
                         f"count|count_*|n; tables: {'; '.join(seen) or 'none'}")
    finally:
        con.close()


def check_orders(argv):
    if len(argv) != 2:
        raise CheckError("usage: check_outputs.py orders REF.db OTHER.db")
    ref, _ = load_orders(argv[0])
    other, other_desc = load_orders(argv[1])
    problem = diff_maps(ref, other, "customers")
    if problem:
        return f"MISMATCH (vs {other_desc}): {problem}"
    return (f"agree: {len(ref):,} customers, "
            f"{sum(c for c, _ in ref.values()):,} orders kept")


def main(argv):
    commands = {"words": check_words, "orders": check_orders}
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        message = commands[argv[1]](argv[2:])
    except (CheckError, OSError, sqlite3.Error) as e:
        print(f"MISMATCH: {e}")
        return 1
    print(message)
    return 0 if message.startswith("agree") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
