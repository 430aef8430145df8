"""docs/coverage.md cannot drift from the seeds or from the documents it points at.

docs/coverage.md maps every checkbox of seed 004 and every question of seed 000 (the two source
documents, kept beside the repository in ../shared/seeds/) to the place that answers it. This
test checks that:

- every relative link in it names a file that exists, and a link to a Markdown file with an
  anchor names a heading of that file (GitHub's anchor rule, duplicates suffixed -1, -2, ...);
- the seed 004 table has one row per `- [ ]` / `- [x]` line of seed 004, in the seed's order,
  each row quoting (a normalised prefix of) its checkbox;
- every question of seed 000 has a row in the seed 000 table;
- every test or function named in backticks (a snake_case name with three or more underscores)
  exists as a `fn` in the repository's Rust code.

README.md and every other document under docs/ get the link check too, and the tests they name
must exist (in docs/threat-model.md as a `fn`, elsewhere anywhere in the Rust code, since there
a long snake_case name may also be a function crate, an error code or an attribute).

The two seed checks are skipped, saying so, when the seeds directory does not exist (a checkout
without ../shared/seeds); every other check runs everywhere.

Run: python -m unittest discover -s tools/lint -p 'test_*.py'
"""

import os
import re
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COVERAGE = ROOT / "docs" / "coverage.md"
# The seeds live beside the repository (../shared/seeds); PURSE_SEEDS_DIR may point elsewhere.
SEEDS = Path(os.environ.get("PURSE_SEEDS_DIR") or ROOT.parent / "shared" / "seeds")

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_NAME = re.compile(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+){3,})`")
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(heading: str) -> str:
    """GitHub's heading anchor: inline markup dropped, lowercase, punctuation other than '-' and
    '_' removed, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "-_ ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    """Every anchor GitHub generates for the headings of a Markdown file (fenced code skipped)."""
    seen = {}
    result = set()
    fence = None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = FENCE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker[0] * len(marker)
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def broken_links(doc: Path, text: str, cache: dict | None = None) -> list:
    """The relative links of `doc` whose file, or whose Markdown heading, does not exist."""
    cache = {} if cache is None else cache
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            problems.append(f"{doc.name}: {target}: no file {path}")
            continue
        if not anchor:
            continue
        if path.suffix != ".md":
            problems.append(f"{doc.name}: {target}: an anchor on a file that is not Markdown")
            continue
        if path not in cache:
            cache[path] = anchors(path)
        if anchor not in cache[path]:
            problems.append(f"{doc.name}: {target}: no heading with anchor #{anchor} in {path.name}")
    return problems


def rust_code() -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for d in ("tests", "shared", "functions", "tools")
        for p in (ROOT / d).rglob("*.rs")
        if "target" not in p.parts
    )


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def seed(prefix: str) -> Path:
    if not SEEDS.is_dir():
        raise unittest.SkipTest(
            f"no seeds at {SEEDS}: put them at ../shared/seeds or set PURSE_SEEDS_DIR"
        )
    found = sorted(SEEDS.glob(f"{prefix}_*.txt"))
    if len(found) != 1:
        raise AssertionError(f"expected one seed {prefix}_*.txt in {SEEDS}, found {found}")
    return found[0]


def table_after(markdown: str, heading_prefix: str) -> list:
    """The rows (lists of cells, header row left out) of the first table after the heading that
    starts with the prefix, before the next heading of the same or a higher level."""
    lines = markdown.splitlines()
    start = next(
        (i for i, l in enumerate(lines) if l.startswith(heading_prefix)),
        None,
    )
    if start is None:
        raise AssertionError(f"docs/coverage.md has no heading starting {heading_prefix!r}")
    level = len(heading_prefix) - len(heading_prefix.lstrip("#"))
    rows = []
    for line in lines[start + 1 :]:
        m = HEADING.match(line)
        if m and len(m.group(1)) <= level:
            break
        if not line.startswith("|"):
            if rows:
                break  # the end of the first table
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows[1:]  # the header row


def quoted(cell: str) -> str:
    """The seed text a row quotes: the text between the first pair of double quotes."""
    m = re.search(r'"([^"]+)"', cell)
    return normalise(m.group(1)) if m else ""


class CoverageTable(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = COVERAGE.read_text(encoding="utf-8")

    def test_every_relative_link_names_an_existing_file_and_heading(self):
        links = LINK.findall(self.text)
        self.assertGreater(len(links), 100, "expected a link in every row")
        problems = broken_links(COVERAGE, self.text)
        self.assertEqual(problems, [], "\n".join(problems))

    def test_seed_004_has_one_row_per_checkbox_in_order(self):
        boxes = [
            normalise(m.group(1))
            for m in re.finditer(
                r"^\s*- \[[ xX]\]\s+(.*)$", seed("004").read_text(encoding="utf-8"), re.M
            )
        ]
        self.assertGreater(len(boxes), 50)
        rows = table_after(self.text, "## Seed 004")
        quotes = [quoted(r[1]) if len(r) > 1 else "" for r in rows]
        self.assertEqual(
            len(quotes), len(boxes), "one row per checkbox of seed 004, no more, no less"
        )
        for i, (quote, box) in enumerate(zip(quotes, boxes), 1):
            self.assertTrue(
                len(quote) >= min(len(box), 20) and box.startswith(quote),
                f"row {i} quotes {quote!r}, but checkbox {i} of seed 004 is {box!r}",
            )

    def test_seed_000_has_a_row_for_every_question(self):
        lines = seed("000").read_text(encoding="utf-8").splitlines()
        questions = []
        for i, line in enumerate(lines):
            s = line.strip()
            if re.match(r"^## ", s):  # the numbered questions and "Outline how ..."
                questions.append(re.sub(r"^\d+\.?\s+", "", s[3:]))  # "1 How would ..."
            elif re.match(r"^> (What|How) .*\?$", s):  # section 4's questions
                questions.append(s[2:])
            elif re.match(r"^- (What|How) .*\?$", s):  # section 5's questions
                questions.append(s[2:])
        # section 5's audit list: the indented items after "What key areas would you audit"
        audit = next(i for i, l in enumerate(lines) if "key areas would you audit" in l)
        for line in lines[audit + 1 :]:
            m = re.match(r"^\s{2,}- (.+)$", line)
            if m:
                questions.append(m.group(1))
            elif line.strip().startswith("- ") and not line.startswith(" "):
                break
        self.assertGreaterEqual(len(questions), 15)
        rows = table_after(self.text, "## Seed 000")
        quotes = [quoted(r[1]) for r in rows if len(r) > 1]
        missing = [
            q
            for q in questions
            if not any(
                len(quote) >= min(len(normalise(q)), 20) and normalise(q).startswith(quote)
                for quote in quotes
            )
        ]
        self.assertEqual(missing, [], "questions of seed 000 without a row")

    def test_every_named_test_or_function_exists(self):
        names = set(CODE_NAME.findall(self.text))
        self.assertGreater(len(names), 10)
        code = rust_code()
        missing = sorted(n for n in names if not re.search(rf"\bfn {re.escape(n)}\b", code))
        self.assertEqual(missing, [], "named in docs/coverage.md but no such fn")


class EveryDocument(unittest.TestCase):
    """The same two checks on README.md and every document under docs/: a link to a section
    that was renamed, or a test that was renamed, fails here rather than confusing a reader."""

    DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

    def test_every_relative_link_resolves(self):
        cache = {}
        problems = []
        for doc in self.DOCS:
            problems += broken_links(doc, doc.read_text(encoding="utf-8"), cache)
        self.assertEqual(problems, [], "\n".join(problems))

    def test_every_named_test_exists(self):
        # The threat model cites tests as its evidence: each must be a `fn`. Elsewhere a long
        # snake_case name may also be a function crate, an error code or an attribute; it must
        # still exist somewhere in the Rust code.
        code = rust_code()
        crates = {p.name for p in (ROOT / "functions").iterdir()}
        problems = []
        for doc in self.DOCS:
            strict = doc.name == "threat-model.md"
            for name in sorted(set(CODE_NAME.findall(doc.read_text(encoding="utf-8")))):
                if re.search(rf"\bfn {re.escape(name)}\b", code):
                    continue
                if not strict and (name in crates or re.search(rf"\b{re.escape(name)}\b", code)):
                    continue
                problems.append(f"{doc.name}: `{name}`")
        self.assertEqual(problems, [], "named in the docs but not in the code")


class SlugRule(unittest.TestCase):
    def test_githubs_rule(self):
        self.assertEqual(slug("5. Webhook handling"), "5-webhook-handling")
        self.assertEqual(slug("2.1 Approach: a modular monolith"), "21-approach-a-modular-monolith")
        self.assertEqual(slug("`make test`: what CI checks"), "make-test-what-ci-checks")
        self.assertEqual(slug("10. Scaling to 100x"), "10-scaling-to-100x")
        self.assertEqual(slug("§5 Ledger & audit"), "5-ledger--audit")
        self.assertEqual(slug("`call.invite`: place a call"), "callinvite-place-a-call")
        self.assertEqual(slug("snake_case-and-dash"), "snake_case-and-dash")

    def test_duplicates_are_numbered(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "x.md"
            p.write_text("# A\n## Look\n```sh\n# Look\n```\n## Look\n### Look\n", encoding="utf-8")
            self.assertEqual(anchors(p), {"a", "look", "look-1", "look-2"})


if __name__ == "__main__":
    unittest.main()
