"""Docs without Python: a rule, a relation and a code category an author adds to a KB get their
site pages from `mkdocs build` alone, with no change to engine/; so do relations the author gives
a `@docs` role (a reference list with its own page, a code list whose codes get pages, a per-code
fact shown on the code pages and in the code lookup).

The KB is a temporary copy of kb/ with one new outcome rule, one new derived relation (with a
`@reading`), one new code category (a CPT list row) and three new fact relations with `@docs`
roles; the site is built once for the module with mkdocs-gen-files pointed at the copy through
POLICYKB_DOCS_KB.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NEW_RULES = """
// Added by tests/test_docs_kb_pages.py in a temporary copy of the KB.

/**
 * @summary An intravenous chemotherapy infusion line billed beside an injection line.
 * @reading chemotherapy infusion line {infusion_line} is billed beside injection line {line}
 */
.decl infusion_beside_injection(line: number, infusion_line: number)
infusion_beside_injection(l, l2) :- injection_line(l, _, _, _), partner(l, "this claim", l2, c),
    code_category(c, "chemo_infusion").

/**
 * @id test.infusion_beside_injection
 * @title 96372 beside an intravenous chemotherapy infusion
 * @summary A test rule: the injection is not paid beside a chemotherapy infusion billed on the
 *          same claim.
 * @source tests/test_docs_kb_pages.py
 * @kind policy
 * @severity deny
 * @group CO
 * @carc 97
 * @message Line {l} is denied beside chemotherapy infusion line {l2}.
 */
deny(l, "test.infusion_beside_injection") :- infusion_beside_injection(l, l2).

/**
 * @summary A route of administration as a test list names it.
 * @reading {route} is a listed route| named {name}
 * @docs reference key=route page=routes anchor=route title="Routes of administration"
 */
.decl test_route(route: symbol, name: symbol)
test_route("IM", "intramuscular").
test_route("SC", "subcutaneous").

/**
 * @summary A note on a code, shown on the code's page and in the code lookup.
 * @docs code_fact code=code label="Infusion note" text="{note}" short="{note}"
 */
.decl test_code_note(code: Code, note: symbol)
test_code_note("96413", "timed from the start of the infusion").

/**
 * @summary Codes a test list names, each with its own page.
 * @docs code_list code=code description=text pages=all label="Test list"
 */
.decl test_code_list(code: Code, text: symbol)
test_code_list("96415", "Chemotherapy infusion, each added hour").
"""

NEW_CODE = ("96413", "Chemotherapy given by intravenous infusion, first hour", "chemo_infusion")


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _add_cpt_row(path: Path, row: tuple[str, str, str]) -> None:
    """Append the row to the KB's CPT list (replacing a row of the same code, if any)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([r for r in rows if not r or r[0] != row[0]] + [list(row)])
    path.write_text(out.getvalue(), encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str, str]:
    if importlib.util.find_spec("mkdocs_gen_files") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs-gen-files and mkdocs-material are not installed")
    tmp = tmp_path_factory.mktemp("kbcopy")
    kb = tmp / "kb"
    shutil.copytree(ROOT / "kb", kb)
    (kb / "policy" / "infusion_test.dl").write_text(NEW_RULES, encoding="utf-8")
    _add_cpt_row(kb / "tables" / "cpt_codes.csv", NEW_CODE)
    before = _tree_digest(ROOT / "engine")
    out = tmp / "html"
    env = {**os.environ, "POLICYKB_DOCS_KB": str(kb), "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          check=False, cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out, before, _tree_digest(ROOT / "engine")


def test_new_rule_gets_its_page_with_reading_denial_codes_and_source(built) -> None:
    html, _b, _a = built
    page = (html / "rules" / "test.infusion_beside_injection.html").read_text(encoding="utf-8")
    assert "96372 beside an intravenous chemotherapy infusion" in page
    # the body condition is read from the new relation's @reading, linked to the relation's page
    assert "chemotherapy infusion line <code>l2</code> is billed beside injection line <code>l</code>" in page
    assert 'href="../relations/infusion_beside_injection.html"' in page
    assert "97" in page and "kb/policy/infusion_test.dl" in page
    index = (html / "rules" / "index.html").read_text(encoding="utf-8")
    assert "test.infusion_beside_injection.html" in index


def test_new_relation_gets_its_page_with_its_rule_and_reader(built) -> None:
    html, _b, _a = built
    page = (html / "relations" / "infusion_beside_injection.html").read_text(encoding="utf-8")
    assert "An intravenous chemotherapy infusion line billed beside an injection line." in page
    assert "infusion_line" in page and "test.infusion_beside_injection.html" in page
    assert "infusion_beside_injection.html" in (html / "relations" / "index.html").read_text(encoding="utf-8")


def test_new_code_category_gets_its_page_listing_the_code(built) -> None:
    html, _b, _a = built
    page = (html / "codes" / "category" / "chemo_infusion.html").read_text(encoding="utf-8")
    assert "96413" in page
    code = (html / "codes" / "96413.html").read_text(encoding="utf-8")
    assert "Chemotherapy given by intravenous infusion, first hour" in code
    assert "test.infusion_beside_injection.html" in code   # the rule that can decide a claim with it


def test_engine_is_untouched_by_the_new_pages(built) -> None:
    _html, before, after = built
    assert before == after


def test_a_reference_role_gets_its_own_page_linked_from_home(built) -> None:
    html, _b, _a = built
    page = (html / "routes.html").read_text(encoding="utf-8")
    assert "Routes of administration" in page and "A route of administration as a test list names it." in page
    assert '<tr id="route-IM">' in page and "intramuscular" in page and '<tr id="route-SC">' in page
    assert 'href="routes.html"' in (html / "index.html").read_text(encoding="utf-8")
    relation = (html / "relations" / "test_route.html").read_text(encoding="utf-8")
    assert "route" in relation and "name" in relation and "subcutaneous" in relation


def test_a_code_fact_role_shows_on_the_code_page_and_in_the_lookup(built) -> None:
    html, _b, _a = built
    code = (html / "codes" / "96413.html").read_text(encoding="utf-8")
    assert "Infusion note" in code and "timed from the start of the infusion" in code
    shard = json.loads((html / "assets" / "lookup" / "9.json").read_text(encoding="utf-8"))
    labels = [label for label, _none in shard["~"]["f"]]
    assert shard["96413"]["f"][labels.index("Infusion note")] == "timed from the start of the infusion"
    assert shard["96372"]["f"][labels.index("Infusion note")] == ""  # no note for it


def test_a_code_list_role_gives_each_of_its_codes_a_page(built) -> None:
    html, _b, _a = built
    page = (html / "codes" / "96415.html").read_text(encoding="utf-8")
    assert "Test list: <em>Chemotherapy infusion, each added hour</em>" in page
    assert "kb/policy/infusion_test.dl:" in page
