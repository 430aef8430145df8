"""What keeps the Lambda binaries small, checked without building them.

`make package` builds every function for arm64 and fails when a stripped binary is over 6 MB, but
it takes tens of minutes, too long for `make test`. This test checks in seconds the causes of
the size it measured (docs/benchmarks.md, "Release binary size"):

- the release profile is the sized one (opt-level "z", fat LTO, one codegen unit, stripped,
  panic = abort);
- no crate of the workspace links a second HTTP or TLS stack, a second crypto provider, a
  platform verifier or a regex engine: `cargo tree` of the whole workspace (features unified the
  way `cargo lambda build` and `sam build` unify them) has none of the crates below, and no
  function crate depends on reqwest (the tests' client of the local servers).

Needs `cargo` on PATH (it resolves the dependency graph from Cargo.lock; nothing is compiled).

Run: python -m unittest discover -s tools/lint -p 'test_*.py'
"""

import re
import shutil
import subprocess
import tomllib
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Crates that, when they appear, bring back what the size work took out.
BANNED_ANYWHERE = {
    "aws-lc-sys": "a second crypto provider (rustls runs on ring; shared/src/tls.rs)",
    "aws-lc-rs": "a second crypto provider (rustls runs on ring; shared/src/tls.rs)",
    "rustls-platform-verifier": "a platform verifier (the roots are compiled in; shared/src/tls.rs)",
    "regex": "a regex engine (tracing-subscriber's env-filter; shared/src/telemetry.rs)",
    "regex-syntax": "a regex engine (tracing-subscriber's env-filter; shared/src/telemetry.rs)",
    "hyper-tls": "a second TLS stack",
    "native-tls": "a second TLS stack",
}


def cargo_tree(*args: str) -> str:
    run = subprocess.run(["cargo", "tree", "--locked", "--prefix", "none", *args], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    if run.returncode != 0 and "did not match any packages" in run.stderr:
        return ""
    run.check_returncode()
    return run.stdout


@unittest.skipUnless(shutil.which("cargo"), "cargo is not on PATH")
class PackageWeight(unittest.TestCase):
    def test_the_release_profile_is_the_sized_one(self):
        profile = tomllib.loads((ROOT / "Cargo.toml").read_text())["profile"]["release"]
        self.assertEqual(
            {k: profile.get(k) for k in ("opt-level", "lto", "codegen-units", "strip", "panic")},
            {"opt-level": "z", "lto": "fat", "codegen-units": 1, "strip": "symbols", "panic": "abort"},
        )

    def test_no_crate_brings_a_second_stack_or_a_regex_engine(self):
        linked = set(cargo_tree("--workspace", "-e", "normal,build", "--format", "{lib}").split())
        linked = {name.replace("_", "-") for name in linked}
        found = {name: why for name, why in BANNED_ANYWHERE.items() if name in linked}
        self.assertEqual(found, {}, "these crates are linked again")

    def test_no_function_links_reqwest(self):
        functions = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "Cargo.toml").is_file())
        self.assertGreater(len(functions), 40)
        args = [a for f in functions for a in ("-p", f)]
        users = cargo_tree(*args, "-e", "normal", "-i", "reqwest", "--depth", "1")
        self.assertEqual(re.findall(r"^\S+", users, re.M), [], "a function links reqwest")


if __name__ == "__main__":
    unittest.main()
