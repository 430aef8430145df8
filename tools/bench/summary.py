#!/usr/bin/env python3
"""Prints the benchmark summary table from tools/bench/*.py results (and binary sizes).

Usage: summary.py [--dir target/bench] [--markdown FILE]
Reads <dir>/coldstart.json and <dir>/settlement.json when present; sizes come from
target/release/<binary>. Writes <dir>/summary.txt (and FILE as Markdown when asked).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402

SIZE_BINARIES = ["http_me_get", "http_deposits_create", "webhook_revio", "sqs_revio_events", "http_auth_register"]


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "?"
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        rustc = "?"
    mem = "?"
    try:
        kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpus": str(os.cpu_count()), "model": model, "memory": mem, "kernel": platform.release(),
            "arch": platform.machine(), "rustc": rustc}


def sizes() -> list[tuple[str, float | None, str]]:
    out = []
    for name in SIZE_BINARIES:
        p = b.ROOT / "target" / "release" / name
        if not p.exists():
            out.append((name, None, "not built"))
            continue
        try:
            desc = subprocess.run(["file", "-b", str(p)], capture_output=True, text=True, check=False).stdout
        except OSError:  # no `file` command
            desc = ""
        stripped = "stripped" if ", stripped" in desc else ("not stripped" if "not stripped" in desc else "?")
        out.append((name, p.stat().st_size / 1e6, stripped))
    return out


def fmt(x: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def ops(d: dict[str, float]) -> str:
    return ", ".join(f"{op} {n:g}" for op, n in d.items()) or "none"


def build(directory: Path) -> list[tuple[str, list[list[str]], list[str]]]:
    """(title, rows, header) tables."""
    tables = []
    m = machine()
    tables.append(("Machine", [[k, v] for k, v in m.items()], ["", ""]))
    tables.append(("Release binaries (opt-level s, thin LTO, strip; x86_64)",
                   [[n, fmt(s, " MB", 2), st] for n, s, st in sizes()], ["binary", "size", ""]))

    cs_path = directory / "coldstart.json"
    if cs_path.exists():
        cs = json.loads(cs_path.read_text())
        rows = []
        for label, r in cs["binaries"].items():
            if "error" in r:
                rows.append([label, "error", "", "", "", "", r["error"].splitlines()[0], ""])
                continue
            i = r["init_ms"]
            aws = ", ".join(f"{op.split('.', 1)[1]} {n:g}" for op, n in r.get("aws_requests_per_init", {}).items())
            rows.append([label, fmt(i["min"]), fmt(i["median"]), fmt(i["p90"]), fmt(r["cpu_ms"]["median"]),
                         fmt(r["max_rss_mib"].get("median")), r["init_io"], aws or "0"])
            if "first_request_ms" in r:
                f = r["first_request_ms"]
                rows.append(["  then first request (401, no I/O)", fmt(f["min"]), fmt(f["median"]), fmt(f["p90"]),
                             "", "", "", ""])
        tables.append((f"Cold start: spawn -> first GET /runtime/invocation/next, ms ({cs['runs']} runs, "
                       f"{cs['warmup']} warm-up not counted)",
                       rows, ["binary", "min", "median", "p90", "CPU ms", "peak RSS MiB", "fetched at init", "AWS requests at init"]))

    st_path = directory / "settlement.json"
    if st_path.exists():
        st = json.loads(st_path.read_text())
        c = st["devserver"]["create"]
        s = st["devserver"]["settle"]
        rows = [
            ["POST /v1/deposits", f"{c['dynamodb_requests_per_deposit']:g}", ops(c["dynamodb_per_deposit"]),
             f"{c['deposits']} deposits"],
            ["settlement (receiver + consumer)", f"{s['dynamodb_requests_per_settlement']:g}",
             ops(s["dynamodb_per_settlement"]), f"{s['settlements']} settled: {s['statuses']}"],
        ]
        r2 = st.get("release", {})
        for name in ("webhook_revio", "sqs_revio_events"):
            if name in r2:
                f = r2[name]
                rows.append([f"  {name} (release, per event)", f"{f['dynamodb_requests_per_event']:g}",
                             ops(f["dynamodb_per_event"]), "SQS: " + ops(f["sqs_per_event"])])
        tables.append(("DynamoDB requests (emulator counters; exact)", rows,
                       ["what", "requests", "by operation", "note"]))
        items = r2.get("item_bytes_max", {})
        rows = [["TransactWriteItems per settlement", f"{s['transact_write_items_per_settlement']:g}"],
                ["items in the settlement transaction", "3 (TXN, debit account shard, credit wallet)"],
                ["largest item sizes, bytes", ", ".join(f"{k} {v}" for k, v in items.items()) or "-"],
                ["largest item by kind, bytes", ", ".join(f"{k} {v}" for k, v in r2.get("item_bytes_max_by_kind", {}).items())],
                ["write units per settlement", "6 in the transaction (3 items x 2, each < 1 KB)" if items and max(items.values()) < 1024
                 else "?"],
                ["secrets loaded per request", f"{ops(s['secretsmanager_per_settlement'])} (settlement), "
                                               f"{ops(c['secretsmanager_per_deposit'])} (deposit)"]]
        tables.append(("Write units", rows, ["", ""]))
        rows = []
        for name in ("webhook_revio", "sqs_revio_events"):
            if name in r2:
                f = r2[name]
                w = f["warm_invocation_ms"]
                rows.append([f"{name} (release, fake runtime API)", fmt(f["first_invocation_ms"]), fmt(w.get("min")),
                             fmt(w.get("median")), fmt(w.get("p90")), fmt(f.get("first_invocation_cpu_ms"), "", 2) + " / " + fmt(f.get("warm_cpu_ms_per_event"), "", 2),
                             str(f["events"])])
        dw = s["devserver_webhook_handler_ms"]
        rows.append(["webhook receiver in dev server (debug build)", "", fmt(dw.get("min")), fmt(dw.get("median")),
                     fmt(dw.get("p90")), "", str(dw.get("n"))])
        dh = s["devserver_webhook_answered_to_batch_processed_ms"]
        rows.append(["webhook answered -> consumer done (dev server, debug)", "", fmt(dh.get("min")),
                     fmt(dh.get("median")), fmt(dh.get("p90")), "", str(dh.get("n"))])
        dc = c["devserver_handler_ms"]
        rows.append(["POST /v1/deposits in dev server (debug build)", "", fmt(dc.get("min")), fmt(dc.get("median")),
                     fmt(dc.get("p90")), "", str(dc.get("n"))])
        tables.append(("Handler time per event, ms (against moto: upper bounds)", rows,
                       ["handler", "first", "min", "median", "p90", "CPU ms first / warm", "n"]))
        lat = r2.get("emulator_latency_ms")
        if lat:
            tables.append((f"Emulator round trip from boto3, median ms (table of {lat['table_items']} items)",
                           [[k, f"{v:g}"] for k, v in lat.items() if k != "table_items"], ["operation", "ms"]))
    return tables


def render_text(tables) -> str:
    out = []
    for title, rows, header in tables:
        out.append(f"\n{title}")
        cols = [header] + rows
        widths = [max(len(str(r[i])) if i < len(r) else 0 for r in cols) for i in range(len(header))]
        for j, r in enumerate(cols):
            if j == 0 and not any(header):
                continue
            out.append("  " + "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(out) + "\n"


def render_md(tables) -> str:
    out = []
    for title, rows, header in tables:
        out.append(f"\n**{title}**\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for r in rows:
            out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(b.ROOT / "target" / "bench"))
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    d = Path(args.dir)
    tables = build(d)
    text = render_text(tables)
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.txt").write_text(text)
    if args.markdown:
        Path(args.markdown).write_text(render_md(tables))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
