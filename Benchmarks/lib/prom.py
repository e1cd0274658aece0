#!/usr/bin/env python3
"""Reading a running Crest's own /metrics (Prometheus text) — shared by the benchmark scripts.

As a command, what the server's own histograms counted between two reads:

    prom.py save URL FILE      # keep a read of /metrics
    prom.py orders URL FILE    # "p50_ms p99_ms count" of the orders answered 201 since (the
                               # order route's `http_server_request_duration`: from the request
                               # read to its answer, not the time it waited in its socket before)
    prom.py stages URL FILE    # "stage p50/p99 …" of `crest_order_stage_seconds` since, in ms
    prom.py batches URL FILE   # "batches mean_size mean_commit_ms" of the order batches since
    prom.py paths URL [FILE]   # how a PostgreSQL node's batches were written (since FILE's read):
                               # "one_statement=N locked=N one_statement_missed=N"
"""
import json
import re
import sys
import urllib.request

HISTOGRAM = "http_server_request_duration"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$')  # label values may hold braces: {saleID}
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    """{(name, frozenset(labels)): value} of one /metrics read."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if not match:
            continue
        labels = frozenset(LABEL.findall(match.group(2) or ""))
        try:
            samples[(match.group(1), labels)] = float(match.group(3))
        except ValueError:
            pass
    return samples


def total(samples, name, **want):
    """The sum of `name` over the series whose labels include `want`."""
    return sum(v for (n, labels), v in samples.items()
               if n == name and all((k, w) in labels for k, w in want.items()))


def is_order_route(labels):
    labels = dict(labels)
    return labels.get("http_request_method") == "POST" and labels.get("http_route", "").endswith("/orders")


def buckets(samples, name, select):
    """{le: cumulative count} summed over the series `select` accepts."""
    result = {}
    for (n, labels), v in samples.items():
        if n == name + "_bucket" and select(labels):
            le = float(dict(labels)["le"].replace("+Inf", "inf"))
            result[le] = result.get(le, 0) + v
    return result


def quantile(before, after, q):
    """The q-quantile, in ms, of what a histogram counted between two reads, interpolated inside
    its bucket as Prometheus' histogram_quantile does (the +Inf bucket answers its lower bound)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if bound == float("inf"):
                return round(lower * 1000, 1)
            share = (rank - below) / (count - below) if count > below else 1
            return round((lower + (bound - lower) * share) * 1000, 1)
        lower, below = bound, count
    return None


def status_class(labels, first):
    return dict(labels).get("http_response_status_code", "").startswith(first)


def admitted_orders(samples):
    """The order route's buckets, answers 201 only."""
    return buckets(samples, HISTOGRAM, lambda labels: is_order_route(labels) and status_class(labels, "201"))


STAGES = ["admission", "write_path", "gate", "batch_wait", "commit", "answer"]


def main():
    command, url = sys.argv[1:3]
    path = sys.argv[3] if len(sys.argv) > 3 else None
    now = scrape(url)
    if command == "save":
        with open(path, "w") as file:
            json.dump([[name, sorted(labels), value] for (name, labels), value in now.items()], file)
        return
    before = {}
    if path:
        with open(path) as file:
            before = {(name, frozenset(tuple(label) for label in labels)): value
                      for name, labels, value in json.load(file)}
    if command == "orders":
        old, new = admitted_orders(before), admitted_orders(now)
        count = int(new.get(float("inf"), 0) - old.get(float("inf"), 0))
        print(f"{quantile(old, new, 0.5)} {quantile(old, new, 0.99)} {count}")
    elif command == "stages":
        parts = []
        for stage in STAGES:
            select = lambda labels: ("stage", stage) in labels
            old, new = buckets(before, "crest_order_stage_seconds", select), buckets(now, "crest_order_stage_seconds", select)
            parts.append(f"{stage} {quantile(old, new, 0.5)}/{quantile(old, new, 0.99)}")
        print(" ".join(parts))
    elif command == "batches":
        count = total(now, "crest_batch_size_count") - total(before, "crest_batch_size_count")
        size = total(now, "crest_batch_size_sum") - total(before, "crest_batch_size_sum")
        commits = (total(now, "crest_batch_commit_duration_seconds_count")
                   - total(before, "crest_batch_commit_duration_seconds_count"))
        commit = (total(now, "crest_batch_commit_duration_seconds_sum")
                  - total(before, "crest_batch_commit_duration_seconds_sum"))
        print(f"{int(count)} {size / count if count else 0:.1f} {commit * 1000 / commits if commits else 0:.2f}")
    elif command == "paths":
        parts = []
        name = "crest_postgres_reservation_batches_total"
        for way in ("one_statement", "locked", "one_statement_missed"):
            count = sum(value for (n, labels), value in now.items() if n == name and ("path", way) in labels) - sum(
                value for (n, labels), value in before.items() if n == name and ("path", way) in labels)
            parts.append(f"{way}={int(count)}")
        print(" ".join(parts))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
