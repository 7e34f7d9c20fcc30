#!/usr/bin/env python3
"""Writes the Markdown report of a bench run: medians over rounds, ratios authmd/peer."""
import json
import statistics
import sys
from collections import defaultdict

path, conc, duration, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [json.loads(l) for l in open(path) if l.strip()]
growth = [r for r in rows if r.get("growth")]
runs = [r for r in rows if not r.get("growth")]

groups = defaultdict(list)
for r in runs:
    groups[(r["backend"], r["path"], r["server"])].append(r)


def med(rs, key):
    vals = [r.get(key) for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


print(f"# authmd benchmark — concurrency {conc}, {duration} s per run, {rounds} rounds, medians\n")
print("Each row: the median of the rounds; servers alternate (authmd, peer, authmd, peer …).")
print("`server CPU` and `others CPU` are percent of one core over the run; others include the load generator.")
print("`CPU µs/req` is the server's CPU time per answered request (server CPU over req/s).\n")
for backend in sorted({r["backend"] for r in runs}):
    print(f"## {backend}\n")
    print("| path | server | req/s | p50 ms | p99 ms | errors | non-2xx | peak RSS MiB | server CPU % | others CPU % | CPU µs/req | authmd/peer |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    paths = sorted({p for (b, p, s) in groups if b == backend}, key=lambda p: (p.startswith("growth"), p))
    for p in paths:
        peer = groups.get((backend, p, "peer"))
        for server in ("authmd", "peer"):
            rs = groups.get((backend, p, server))
            if not rs:
                continue
            ratio = ""
            if server == "authmd" and peer:
                ratio = f"{med(rs, 'rps') / med(peer, 'rps'):.2f}×"
            rss = med(rs, "peak_rss_kib") or 0
            cpu = med(rs, "server_cpu_pct")
            others = med(rs, "others_cpu_pct")
            per_request = "" if cpu is None or not med(rs, "rps") else round(cpu / 100 * 1e6 / med(rs, "rps"))
            print(
                f"| {p} | {server} | {med(rs, 'rps'):.0f} | {med(rs, 'p50_ms'):.2f} | {med(rs, 'p99_ms'):.2f} | "
                f"{sum(r['errors'] for r in rs)} | {sum(r['non_2xx'] for r in rs)} | {rss / 1024:.1f} | "
                f"{'' if cpu is None else round(cpu, 1)} | {'' if others is None else round(others, 1)} | {per_request} | {ratio} |"
            )
    print()
for g in growth:
    per_million = (g["db_bytes_after"] - g["db_bytes_before"]) / (g["tokens_added"] / 1_000_000)
    print(f"Growth ({g['backend']}): 1,000,000 access tokens added, database grew by {per_million / 2**20:.0f} MiB per million tokens.\n")

# The targets, checked from this run's medians (ratios from the same run).
def rps(backend, path, server="authmd"):
    rs = groups.get((backend, path, server))
    return med(rs, "rps") if rs else None


def p99(backend, path, server="authmd"):
    rs = groups.get((backend, path, server))
    return med(rs, "p99_ms") if rs else None


def check(label, value, ok, shown):
    if value is None:
        return f"| {label} | not measured | |"
    return f"| {label} | {shown} | {'met' if ok else '**missed**'} |"


introspections = ("introspect valid", "introspect unknown", "introspect revoked")
lines = []
if groups.get(("sqlite", "introspect valid", "authmd")):
    ratios = [rps("sqlite", p) / rps("sqlite", p, "peer") for p in introspections if rps("sqlite", p, "peer")]
    lines.append(check("SQLite: introspection ≥ 6× the peer", ratios and min(ratios), ratios and min(ratios) >= 6,
                       ratios and f"{min(ratios):.2f}× (lowest of valid, unknown, revoked)"))
    p99s = [p99("sqlite", p) for p in introspections if ("sqlite", p, "authmd") in groups]
    lines.append(check("SQLite: introspection p99 ≤ 5 ms", max(p99s), max(p99s) <= 5, f"{max(p99s):.2f} ms (highest)"))
    cc, cc_peer = rps("sqlite", "token client_credentials"), rps("sqlite", "token client_credentials", "peer")
    if cc and cc_peer:
        lines.append(check("SQLite: client_credentials ≥ 4× the peer", cc / cc_peer, cc / cc_peer >= 4, f"{cc / cc_peer:.2f}×"))
    health = rps("sqlite", "healthz")
    if health:
        share = min(rps("sqlite", p) for p in introspections) / health
        lines.append(check("SQLite: introspection ≥ 75 % of /healthz", share, share >= 0.75, f"{share * 100:.0f} % (lowest)"))
    for path, label in (("agent/auth anonymous", "anonymous registration"),
                        ("POST /oauth2/token (jwt-bearer)", "JWT-bearer")):
        value = p99("sqlite", path)
        if value is not None:
            lines.append(check(f"SQLite: {label} p99 ≤ 15 ms", value, value <= 15, f"{value:.2f} ms"))
    rss = max(r.get("peak_rss_kib") or 0 for r in runs if r["backend"] == "sqlite" and r["server"] == "authmd") / 1024
    lines.append(check("SQLite: peak RSS ≤ 64 MiB", rss, rss <= 64, f"{rss:.1f} MiB (highest)"))
if groups.get(("postgres", "introspect valid", "authmd")):
    cc, cc_peer = rps("postgres", "token client_credentials"), rps("postgres", "token client_credentials", "peer")
    if cc and cc_peer:
        lines.append(check("PostgreSQL: token issuance ≥ 1.5× the peer", cc / cc_peer, cc / cc_peer >= 1.5, f"{cc / cc_peer:.2f}×"))
    ratios = [rps("postgres", p) / rps("postgres", p, "peer") for p in introspections if rps("postgres", p, "peer")]
    if ratios:
        lines.append(check("PostgreSQL: introspection ≥ 5× the peer", min(ratios), min(ratios) >= 5, f"{min(ratios):.2f}× (lowest)"))
if lines:
    print("## Targets, from this run\n")
    print("| target | this run | |")
    print("|---|---|---|")
    print("\n".join(lines))
    print()
