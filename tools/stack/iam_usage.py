#!/usr/bin/env python3
"""Print the emulator's IAM usage record per function, compactly (tools/stack/iam_policy.py).

    tools/stack/iam_usage.py [--url http://127.0.0.1:<port>] [--denied] [--json]

One block per function: each (action, resource, leading-key prefix) it used, with ``DENIED``
for what its policy did not allow and the number of checks. Resources show the stack prefix as
``{prefix}`` and the account/region part of ARNs is shortened to ``…``. The URL defaults to
``$AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.request
from typing import Any

_ARN = re.compile(r"^arn:aws:([a-z0-9-]+):[a-z0-9-]*:\d*:")


def short(resource: str) -> str:
    m = _ARN.match(resource)
    return f"{m.group(1)}:…:{resource[m.end():]}" if m else resource


def render(usage: dict[str, Any], denied_only: bool = False) -> str:
    lines = [f"IAM mode: {usage.get('mode')}   denied checks: {usage.get('denials', 0)}"]
    for function in sorted(usage.get("functions", {})):
        entries = [e for e in usage["functions"][function] if not denied_only or not e["allowed"]]
        if not entries:
            continue
        lines.append("")
        lines.append(function)
        for e in sorted(entries, key=lambda e: (e["action"], e["resource"], e["leading_key"], e["allowed"])):
            flag = "  " if e["allowed"] else "DENIED "
            lk = "" if e["leading_key"] == "-" else f"  pk {e['leading_key']}"
            lines.append(f"  {flag}{e['action']:<34} {short(e['resource'])}{lk}  x{e['count']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("AWS_ENDPOINT_URL", ""))
    parser.add_argument("--denied", action="store_true", help="only what was (or would be) denied")
    parser.add_argument("--json", action="store_true", help="the raw answer")
    args = parser.parse_args(argv)
    if not args.url:
        print("iam_usage.py: no --url and no AWS_ENDPOINT_URL", file=sys.stderr)
        return 2
    with urllib.request.urlopen(args.url.rstrip("/") + "/_emulator/iam/usage", timeout=30) as r:
        usage = json.loads(r.read())
    print(json.dumps(usage, indent=1, sort_keys=True) if args.json else render(usage, args.denied))
    return 0


if __name__ == "__main__":
    sys.exit(main())
