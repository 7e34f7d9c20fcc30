#!/usr/bin/env python3
"""Turns one measurement (oha's JSON, or a line from the JWT-bearer load generator) into one
JSON line of bench results."""
import json
import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def oha(path, label, server, backend, rss_kib, server_ticks, busy_ticks, duration):
    data = json.load(open(path))
    summary = data.get("summary", {})
    pct = data.get("latencyPercentiles", {})
    codes = {str(k): v for k, v in (data.get("statusCodeDistribution") or {}).items()}
    # Requests still in flight when the run's time is up are cut by oha, not failed by the server.
    errors = sum(v for k, v in (data.get("errorDistribution") or {}).items() if "aborted due to deadline" not in k)
    non_2xx = sum(v for k, v in codes.items() if not k.startswith("2"))
    wall = float(duration) * TICKS
    return {
        "backend": backend,
        "server": server,
        "path": label,
        "rps": round(summary.get("requestsPerSec", 0.0), 1),
        "p50_ms": round((pct.get("p50") or 0) * 1000, 3),
        "p99_ms": round((pct.get("p99") or 0) * 1000, 3),
        "errors": errors,
        "non_2xx": non_2xx,
        "status_codes": codes,
        "peak_rss_kib": int(rss_kib),
        "server_cpu_pct": round(100 * int(server_ticks) / wall, 1),
        "others_cpu_pct": round(100 * (int(busy_ticks) - int(server_ticks)) / wall, 1),
    }


def loadgen(line, server, backend, rss_kib):
    d = json.loads(line)
    return {
        "backend": backend,
        "server": server,
        "path": d["path"],
        "rps": round(d["rps"], 1),
        "p50_ms": round(d["p50_ms"], 3),
        "p99_ms": round(d["p99_ms"], 3),
        "errors": d["errors"],
        "non_2xx": 0,
        "requests": d["requests"],
        "peak_rss_kib": int(rss_kib),
    }


def pair(path_a, path_b, label, backend, rss_kib, server_ticks, busy_ticks, duration):
    """Two oha runs at once, one per instance: throughput adds up, latency is the worse of the
    two, CPU is both servers' together."""
    a = oha(path_a, label, "authmd", backend, rss_kib, server_ticks, busy_ticks, duration)
    b = oha(path_b, label, "authmd", backend, rss_kib, server_ticks, busy_ticks, duration)
    a["rps"] = round(a["rps"] + b["rps"], 1)
    for key in ("p50_ms", "p99_ms"):
        a[key] = max(a[key], b[key])
    for key in ("errors", "non_2xx"):
        a[key] += b[key]
    for code, n in b["status_codes"].items():
        a["status_codes"][code] = a["status_codes"].get(code, 0) + n
    return a


if __name__ == "__main__":
    if sys.argv[1] == "--pair":
        print(json.dumps(pair(*sys.argv[2:10])))
    elif sys.argv[1] == "--loadgen":
        print(json.dumps(loadgen(*sys.argv[2:6])))
    else:
        print(json.dumps(oha(*sys.argv[1:9])))
