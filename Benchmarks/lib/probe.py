#!/usr/bin/env python3
"""An open-loop prober: GET (or POST a signed provider webhook) at a fixed rate on one kept-alive
connection for a while, and print "p50_ms p99_ms non2xx count". Light on purpose: a probe or a
provider sends a few requests a second, and a closed-loop checker that is answered fast would
take the CPU it measures from the crowd beside it.

    probe.py URL SECONDS RATE [WEBHOOK_JSON]   # WEBHOOK_JSON: {"body": "...", "signature": "t=…,v1=…"}
"""
import http.client, json, sys, time, urllib.parse

url, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
webhook = json.load(open(sys.argv[4])) if len(sys.argv) > 4 else None
parts = urllib.parse.urlsplit(url)
connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
latencies, bad = [], 0
start = time.monotonic()
due = start
while due < start + seconds:
    now = time.monotonic()
    if now < due:
        time.sleep(due - now)
    sent = time.monotonic()
    try:
        if webhook:
            connection.request("POST", parts.path, body=webhook["body"], headers={
                "Content-Type": "application/json", "Provider-Signature": webhook["signature"]})
        else:
            connection.request("GET", parts.path)
        response = connection.getresponse()
        response.read()
        if not 200 <= response.status < 300:
            bad += 1
    except (OSError, http.client.HTTPException):
        bad += 1
        connection.close()
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    latencies.append((time.monotonic() - sent) * 1000)
    due += 1 / rate
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
print(f"{pick(0.5):.2f} {pick(0.99):.2f} {bad} {len(latencies)}")
