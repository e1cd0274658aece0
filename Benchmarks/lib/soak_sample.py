#!/usr/bin/env python3
"""Samples a running Crest once per interval for the soak (Benchmarks/soak.sh).

    soak_sample.py URL PID INTERVAL_S SAMPLES OUT.json

Each sample reads the server's own /metrics and /proc/PID/status and keeps, for the interval
just ended: orders accepted per second, p50/p99 of the order route from the histogram's bucket
deltas, answers by status class (5xx counted apart), payments created and orders paid per
second, the p99 from placement to payment creation, the job backlog (jobs due, not yet run),
jobs discarded after their last attempt, the age of the oldest due job, the resident memory and
the server's CPU (100% = one core).
Prints a line per sample as it goes and writes every sample to OUT.json.
"""
import json
import os
import sys
import time

from prom import buckets, is_order_route, quantile, scrape, status_class, total


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid):
    """User and system CPU the process used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    url, pid, interval, count, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    hist = "http_server_request_duration"
    stage = "crest_order_lifecycle_seconds"
    previous, previous_at, previous_cpu = scrape(url), time.monotonic(), cpu_seconds(pid)
    rows = []
    print("minute orders/s p50_ms p99_ms 4xx 5xx payments_created/s paid/s to_payment_p99_ms jobs_due jobs_discarded oldest_due_s rss_mb cpu_percent", flush=True)
    for index in range(1, count + 1):
        time.sleep(max(0, previous_at + interval - time.monotonic()))
        now, now_at, now_cpu = scrape(url), time.monotonic(), cpu_seconds(pid)
        seconds = now_at - previous_at

        def per_second(name, **want):
            return round((total(now, name, **want) - total(previous, name, **want)) / seconds, 1)

        def answered(first):
            return int(sum(v - previous.get(key, 0) for key, v in now.items()
                           if key[0] == hist + "_count" and status_class(key[1], first)))

        order_now = buckets(now, hist, is_order_route)
        order_before = buckets(previous, hist, is_order_route)
        stage_select = lambda labels: ("stage", "payment_created") in labels
        row = {
            "minute": index,
            "orders_per_s": per_second("crest_order_attempts_total", outcome="accepted"),
            "order_p50_ms": quantile(order_before, order_now, 0.50),
            "order_p99_ms": quantile(order_before, order_now, 0.99),
            "answers_4xx": answered("4"),
            "answers_5xx": answered("5"),
            "payments_created_per_s": per_second(stage + "_count", stage="payment_created"),
            "paid_per_s": per_second(stage + "_count", stage="paid"),
            "to_payment_p99_ms": quantile(buckets(previous, stage, stage_select), buckets(now, stage, stage_select), 0.99),
            "jobs_due": int(total(now, "crest_job_queue_depth")),
            "jobs_discarded": int(total(now, "crest_jobs", state="discarded")),
            "oldest_due_s": round(total(now, "crest_job_oldest_due_age_seconds"), 1),
            "rss_mb": round(rss_mb(pid), 1),
            "cpu_percent": round(100 * (now_cpu - previous_cpu) / seconds),
        }
        rows.append(row)
        print(" ".join(str(v) for v in row.values()), flush=True)
        previous, previous_at, previous_cpu = now, now_at, now_cpu
    with open(out, "w") as file:
        json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
