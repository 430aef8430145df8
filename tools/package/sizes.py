#!/usr/bin/env python3
"""Zip every function that `sam build` built and print the sizes (`make package`).

For each function directory of the build (`.aws-sam/build/<LogicalId>/bootstrap`): the binary is
checked to be an arm64 ELF without a symbol table (stripped), zipped the way `sam deploy` uploads
a function's code (deflate, `bootstrap` at the root, mode 0755) into ``<out>/<LogicalId>.zip``,
and both sizes go into a table (``<out>/sizes.md``, ``<out>/sizes.json``). Exits 1 when a
function the template builds is missing, when a binary is not a stripped arm64 ELF or is larger
than ``--limit`` bytes.

Usage: sizes.py (--build-dir .aws-sam/build | --cargo-dir target/aarch64-unknown-linux-gnu/release)
       --out .aws-sam/package --template template.yaml [--limit 6000000] [--arch aarch64]
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import zipfile
from pathlib import Path

MACHINES = {62: "x86_64", 183: "aarch64"}
MB = 1_000_000


def elf_facts(path: Path) -> tuple[str, bool]:
    """(architecture, stripped) of a 64-bit little-endian ELF file; stripped = no .symtab."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path} is not a 64-bit little-endian ELF file")
    machine = struct.unpack_from("<H", data, 18)[0]
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = sections[shstrndx][4] if shnum else 0

    def name(entry: tuple) -> bytes:
        start = names_offset + entry[0]
        return data[start:data.index(b"\0", start)]

    symbols = any(name(s) == b".symtab" for s in sections)
    return MACHINES.get(machine, f"machine {machine}"), not symbols


def template_functions(template: Path) -> list[tuple[str, str]]:
    """(logical id, binary name) of every function the template builds with rust-cargolambda (a
    text scan: the template's CloudFormation tags keep a plain YAML parser from reading it)."""
    found, current, cargo_lambda = [], None, False
    for line in template.read_text().splitlines():
        m = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
        if m:
            current, cargo_lambda = m.group(1), False
        elif current and re.match(r"^\s+BuildMethod:\s*rust-cargolambda\s*$", line):
            cargo_lambda = True
        elif current and cargo_lambda and (b := re.match(r"^\s+Binary:\s*([A-Za-z0-9_]+)\s*$", line)):
            found.append((current, b.group(1)))
            cargo_lambda = False
    return found


def zip_bootstrap(binary: Path, target: Path) -> int:
    """Zips `binary` as `bootstrap` (mode 0755), as `sam deploy` does; returns the zip's size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 << 16)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(target, "w") as z:
        z.writestr(info, binary.read_bytes())
    return target.stat().st_size


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", type=Path, help="sam build's output: <dir>/<LogicalId>/bootstrap")
    p.add_argument("--cargo-dir", type=Path,
                   help="instead, cargo's output: <dir>/<Binary> (target/aarch64-unknown-linux-gnu/release)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--template", type=Path, required=True)
    p.add_argument("--limit", type=int, default=6 * MB)
    p.add_argument("--arch", default="aarch64")
    args = p.parse_args()
    if (args.build_dir is None) == (args.cargo_dir is None):
        p.error("give exactly one of --build-dir and --cargo-dir")

    expected = template_functions(args.template)
    rows, problems = [], []
    for logical_id, name in expected:
        binary = args.cargo_dir / name if args.cargo_dir else args.build_dir / logical_id / "bootstrap"
        if not binary.is_file():
            problems.append(f"{logical_id}: no {binary}")
            continue
        arch, stripped = elf_facts(binary)
        size = binary.stat().st_size
        zipped = zip_bootstrap(binary, args.out / f"{logical_id}.zip")
        rows.append({"function": logical_id, "arch": arch, "stripped": stripped, "binary_bytes": size,
                     "zip_bytes": zipped})
        if arch != args.arch:
            problems.append(f"{logical_id}: built for {arch}, not {args.arch}")
        if not stripped:
            problems.append(f"{logical_id}: the binary still has its symbol table (not stripped)")
        if size > args.limit:
            problems.append(f"{logical_id}: {size} bytes > the limit of {args.limit} bytes")

    rows.sort(key=lambda r: r["binary_bytes"], reverse=True)
    lines = [f"| function | binary (MB, stripped {args.arch}) | zip (MB) |", "| --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['function']} | {r['binary_bytes'] / MB:.2f} | {r['zip_bytes'] / MB:.2f} |")
    if rows:
        sizes = [r["binary_bytes"] for r in rows]
        zips = [r["zip_bytes"] for r in rows]
        lines.append(f"| **{len(rows)} functions**: largest / smallest / total | "
                     f"{max(sizes) / MB:.2f} / {min(sizes) / MB:.2f} / {sum(sizes) / MB:.1f} | "
                     f"{max(zips) / MB:.2f} / {min(zips) / MB:.2f} / {sum(zips) / MB:.1f} |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sizes.md").write_text(table + "\n")
    (args.out / "sizes.json").write_text(json.dumps({"limit_bytes": args.limit, "functions": rows}, indent=2) + "\n")
    print(f"\npackage: {len(rows)} zips in {args.out} (limit {args.limit / MB:.2f} MB per stripped binary)")
    for problem in problems:
        print(f"package: FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
