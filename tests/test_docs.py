"""The generated reference site: complete, fresh, and rendering what the KB says."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest

from engine.docs import graph as G
from engine.docs.build import render, sync
from engine.docs.pages import rule_text
from engine.docs.proofs import render_proof
from engine.docs.reading import Linker, read_rule
from engine.kb import load_kb
from engine.program import program_from_text

ROOT = Path(__file__).resolve().parents[1]
KB = ROOT / "kb"
SITE = ROOT / "site"


@pytest.fixture(scope="module")
def site() -> dict[str, str]:
    files, _counts = render(KB)
    return {path: data.decode() for path, data in files.items()}


@pytest.fixture(scope="module")
def kb():
    return load_kb(KB)


def test_every_rule_relation_category_and_range_has_a_page(site, kb) -> None:
    prog = kb.program
    missing = [f"rules/{r.rule_id}.md" for r in prog.rules if r.rule_id and f"rules/{r.rule_id}.md" not in site]
    missing += [f"relations/{name}.md" for name in prog.decls if f"relations/{name}.md" not in site]
    categories = {row[2] for _s, row in kb.store.scan("cpt_code")}
    missing += [f"codes/category/{c}.md" for c in categories if f"codes/category/{c}.md" not in site]
    ranges = {row[0] for _s, row in kb.store.scan("code_range")}
    missing += [f"codes/range/{r}.md" for r in ranges if f"codes/range/{r}.md" not in site]
    assert not missing, f"pages missing: {missing}"


def test_rules_without_an_id_are_shown_on_their_relation_page(site, kb) -> None:
    for r in kb.program.rules:
        if r.rule_id:
            continue
        page = site[f"relations/{r.head.pred}.md"]
        assert rule_text(r) in page, f"{r.loc}: rule not on relations/{r.head.pred}.md"


def test_every_code_a_rule_names_has_a_page(site, kb) -> None:
    cpt = {row[0] for _s, row in kb.store.scan("cpt_code")}
    assert {f"codes/{c}.md" for c in cpt} <= set(site)
    for code in ("96372", "99213", "90471", "96401", "J2315"):
        assert f"codes/{code}.md" in site


GOLDENS = ["codes/96372.md", "guidance.md", "guide.md", "relations/ptp.md", "rules/inj.facility_em.md"]


def test_golden_pages_in_site_are_what_the_kb_generates(site) -> None:
    # site/ holds hand-written pages and a few golden pages; `mkdocs build` generates the rest
    held = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*") if p.is_file())
    assert sorted(p for p in held if p in site) == GOLDENS
    report = sync({p: t.encode() for p, t in site.items()}, SITE, check=True, goldens=True)
    assert report.files == len(GOLDENS)
    assert report.ok, (f"golden pages in site/ are stale ({report.stale}); read the diff of "
                       "`policykb docs --goldens`, it must be what you intend")


def test_check_mode_reports_changed_missing_and_extra_files(tmp_path) -> None:
    files = {"index.md": b"# Home\n", "rules/a.md": b"# A\n"}
    assert sync(files, tmp_path, check=False).written == ["index.md", "rules/a.md"]
    assert sync(files, tmp_path, check=True).ok
    (tmp_path / "rules" / "a.md").write_text("# edited by hand\n")
    (tmp_path / "stray.md").write_text("not generated\n")
    (tmp_path / "index.md").unlink()
    assert sorted(sync(files, tmp_path, check=True).stale) == ["index.md", "rules/a.md", "stray.md"]
    # goldens mode: only generated files already there count; hand-written ones stay
    goldens = sync(files, tmp_path, check=True, goldens=True)
    assert goldens.stale == ["rules/a.md"] and goldens.files == 1
    assert sync(files, tmp_path, check=False, goldens=True).written == ["rules/a.md"]
    assert not (tmp_path / "index.md").exists() and (tmp_path / "stray.md").exists()
    report = sync(files, tmp_path, check=False)
    assert report.removed == ["stray.md"] and sync(files, tmp_path, check=True).ok


def test_rule_page_shows_rule_reading_sources_codes_and_diagram(site) -> None:
    page = site["rules/inj.facility_em.md"]
    assert 'deny(l, "inj.facility_em") :-' in page
    assert "Line `l` is **denied** by this rule when all of these hold:" in page
    long_rule = site["rules/inj.record_incomplete.md"]
    assert 'deny(l, "inj.record_incomplete") :-\n    injection_line(l, _, _, _),\n' in long_rule
    assert "[facility_em_pos](../relations/facility_em_pos.md)" in page
    assert "Common Reasons for CPT code 96372 Denials" in page
    assert "CARC [97](../denial-codes.md#carc-97)" in page and "RARC [N20]" in page
    assert "kb/tables/carc.csv row" in page and "kb/policy/injection_96372.dl:" in page
    assert '<svg class="pkb-graph"' in page and "prec.facility_em_paid" in page


def test_code_page_has_mue_fee_schedule_rules_and_ptp_partners(site) -> None:
    page = site["codes/96372.md"]
    assert "| MUE | 4 unit(s)" in page and "MAI 3" in page
    assert "| (global) | A | NA |" in page
    for rule in ("inj.facility_em", "inj.facility_pos", "ncci.ptp", "fee.facility_na"):
        assert f"[{rule.replace('_', chr(92) + '_')}](../rules/{rule}.md)" in page
    assert "96372 as column 1: partners not paid beside it" in page
    assert '<a href="99213.html">99213</a>' in page


def test_guide_answers_why_96372_denies_in_pos_22_beside_99213(site) -> None:
    page = site["guide.md"]
    assert "CO-97 N20** from [inj.facility\\_em](rules/inj.facility_em.md)" in page
    assert "Line 2 (96372): **CO-58 N428** from [inj.facility\\_pos](rules/inj.facility_pos.md)" in page
    assert "set aside by [inj.facility\\_em]" in page
    assert '<div class="pkb-proof"' in page


def test_pos_and_modifier_pages_say_what_the_rules_do_with_them(site) -> None:
    pos = site["pos.md"]
    assert '<tr id="pos-22">' in pos and "facility_em_pos" in pos
    assert "Setting: facility {#setting-facility}" in pos
    mods = site["modifiers.md"]
    assert "### distinct\\_service {#role-distinct_service}" in mods
    assert "| [ncci.ptp](rules/ncci.ptp.md) | lifts |" in mods


def test_pages_end_in_exactly_one_newline(site) -> None:
    for path, text in site.items():
        if path.endswith(".md"):
            assert text.endswith("\n") and not text.endswith("\n\n"), path


def test_lookup_index_is_compact_and_covers_the_ncci_tables(site) -> None:
    shards = {p: t for p, t in site.items() if p.startswith("assets/lookup/")}
    assert sum(len(t.encode()) for t in shards.values()) < 5_000_000
    index = {}
    for text in shards.values():
        index.update(json.loads(text))
    # the short texts of the per-code facts, labelled by the KB's @docs annotations (shard header "~")
    labels = [label for label, _none in index["~"]["f"]]
    assert index["96372"]["f"][labels.index("MUE")] == "4 unit(s), MAI 3" and index["96372"]["g"] == 1
    assert index["96372"]["f"][labels.index("Fee schedule")] == "status A, facility NA"
    assert index["~"]["e"] == ["NCCI PTP practitioner edits", "column 1", "column 2"]
    assert len(index["99213"]["p2"]) <= 10 and index["99213"]["c"][2] > 1000
    assert "20610" in index and "0001A" in index
    assert all(len(e.get("p1", [])) <= 10 and len(e.get("p2", [])) <= 10 for e in index.values())
    del index["~"]


# --- units: reading, diagrams, proofs --------------------------------------------------------

READ_KB = """
/**
 * @reading claim line {line} bills code {code}| on {dos}| in POS {pos}| by rendering provider {npi}
 *          | for {units} unit(s)
 */
.decl line(line: number, code: symbol, dos: symbol, pos: symbol, npi: symbol, units: number)
.claim line
/** @reading line {line} carries modifier {modifier} */
.decl line_modifier(line: number, modifier: symbol)
.claim line_modifier
.decl odd(x: number, y: symbol)
/** @summary An even number. Used for tests. */
.decl even(x: number)
.decl deny(line: number, rule: symbol)
/**
 * @id t.rule
 * @title T
 */
deny(l, "t.rule") :- line(l, "96372", d, _, _, u), !line_modifier(l, "25"), u > 2, d != "", odd(l, _), even(u).
"""


def test_reading_gives_one_plain_sentence_per_condition() -> None:
    prog = program_from_text({"t.dl": READ_KB})
    rule = prog.rules[0]
    link = Linker(relation=lambda n: f"<{n}>", constant=lambda rel, attr, v: f"[{v}]")
    head, readings = read_rule(rule, prog.decls, link)
    assert head == "Line `l` is **denied** by this rule when all of these hold:"
    texts = [r.text for r in readings]
    assert texts[0] == "claim line `l` bills code [96372] on `d` for `u` unit(s) (<line>)"
    assert texts[1] == "it is **not** the case that line `l` carries modifier [25] (<line_modifier>)"
    assert texts[2] == "`u` is more than `2`"
    assert texts[3] == "`d` is not empty"
    assert texts[4] == "a odd fact holds with x `l` (<odd>)"  # no @reading: read from the attribute names
    assert texts[5] == "an even number (with x `u`) (<even>)"  # or from the declaration's summary
    assert readings[1].negated and readings[0].datalog == 'line(l, "96372", d, _, _, u)'


def test_checker_warns_of_unknown_decl_keys_and_reading_placeholders_that_are_not_attributes() -> None:
    from engine.checks import check_annotations

    prog = program_from_text({"t.dl": """
/**
 * @summary A PTP row.
 * @reading column 1 code {column_1} over {colum_2}
 * @readng typo
 */
.decl ptp(column_1: symbol, column_2: symbol)
"""})
    found = {(d.code, d.message, d.location.line) for d in check_annotations(prog)}
    assert ("bad-annotation", "@reading of ptp names {colum_2}, not attributes of the relation", 4) in found
    assert ("bad-annotation", "unknown annotation @readng on .decl ptp", 5) in found
    assert not [d for d in check_annotations(program_from_text({"t.dl": READ_KB})) if "decl" in d.message
                or "@reading" in d.message]


def test_diagram_is_well_formed_deterministic_svg_with_links() -> None:
    g = nx.DiGraph()
    g.add_edge("a", "b", negative=False)
    g.add_edge("b", "c", negative=True)
    g.add_edge("a", "c", negative=False)  # skips a column: drawn through a waypoint
    style = {n: G.NodeStyle(n, "derived", f"{n}.html", f"node {n}") for n in g}
    svg = G.svg(g, style, highlight={"c"}, caption="test")
    assert svg == G.svg(g, style, highlight={"c"}, caption="test")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}a")) == 3
    assert len(root.findall(f"{ns}path[@class='pkb-edge neg']")) == 1
    assert "\n\n" not in svg


def test_proof_tree_renders_nested_escaped_html() -> None:
    proof = {"kind": "rule", "fact": 'deny(2, "inj.facility_em")', "rule": "inj.facility_em",
             "source": {"file": "kb/policy/injection_96372.dl", "line": 48}, "bindings": {"p": "22"}, "holds": True,
             "children": [{"kind": "claim", "fact": 'line(2, "96372")', "source": {"claim_field": "lines[1]"}, "holds": True},
                          {"kind": "absent", "fact": "!x(<1>)", "note": "no such fact", "holds": True}]}
    html = render_proof(proof, rule_href=lambda r: f"rules/{r}.html", relation_href=lambda r: None,
                        source_text=lambda s: s.get("claim_field", ""))
    assert html.count("<details") == 1 and html.count("<li") == 3
    assert 'href="rules/inj.facility_em.html"' in html and "!x(&lt;1&gt;)" in html and 'p = &quot;22&quot;' in html
    assert "\n\n" not in html
