"""`policykb diff`: the structural diff, the corpus lines a change alters, and witness claims.

Two changes are made in temporary copies of the bundled KB (each copy loaded once per module;
the cache keys tables by their bytes, so only the changed PTP table is loaded afresh):

- the 27380/27540 PTP edit's deletion date moved from 2024-06-30 to 2024-05-31. From the domain
  notes: 27380/27540 applies to dates of service on or before its deletion date; 27540/27380 is
  active. So on a date in June 2024, same patient, provider and day, 27540 (column 2 of
  27380/27540) is denied under OLD and not under NEW, and 27380 is denied under both. In an
  office (POS 11) 27540 is denied anyway (no non-facility payment), so only a facility claim
  shows the flip.
- facility_em_pos("22") and facility_em_pos("61") removed from the injection policy. From the
  guidance: in those places of service a same-day E/M is paid and 96372 denied whatever the
  modifiers; without them NCCI governs, and an E/M without modifier 25 beside 96372 is denied.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.api import PolicyKB
from engine.claims import parse_claim
from engine.cli import main
from engine.diff import diff_rules, structural_diff
from engine.program import load_program, program_from_text
from engine.witness import CorpusClaim, Impact, default_corpus, impact, outcomes, read_claims_jsonl

ROOT = Path(__file__).resolve().parents[1]
KB = ROOT / "kb"
PTP_ROW_OLD = b"\n27380,27540,,2024-06-30,1,"
PTP_ROW_NEW = b"\n27380,27540,,2024-05-31,1,"


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("kbs")
    ptp = base / "ptp" / "kb"
    shutil.copytree(KB, ptp)
    table = ptp / "tables" / "ncci_ptp_practitioner.csv.gz"
    data = gzip.decompress(table.read_bytes())
    assert data.count(PTP_ROW_OLD) == 1, "the 27380/27540 row of the domain notes is not in the table"
    table.write_bytes(gzip.compress(data.replace(PTP_ROW_OLD, PTP_ROW_NEW), compresslevel=1, mtime=0))
    pos = base / "pos" / "kb"
    shutil.copytree(KB, pos, ignore=shutil.ignore_patterns("tables"))
    (pos / "tables").symlink_to(KB / "tables")
    dl = pos / "policy" / "injection_96372.dl"
    text = dl.read_text(encoding="utf-8")
    for p in ("22", "61"):
        assert f'facility_em_pos("{p}").\n' in text
        text = text.replace(f'facility_em_pos("{p}").\n', "")
    dl.write_text(text, encoding="utf-8")
    return {"ptp": ptp, "pos": pos}


@pytest.fixture(scope="module")
def old_kb() -> PolicyKB:
    return PolicyKB.open(KB)


@pytest.fixture(scope="module")
def ptp_kb(copies: dict[str, Path]) -> PolicyKB:
    return PolicyKB.open(copies["ptp"])


@pytest.fixture(scope="module")
def pos_kb(copies: dict[str, Path]) -> PolicyKB:
    return PolicyKB.open(copies["pos"])


def _claim(date: str, pos: str) -> dict:
    return {
        "id": "T",
        "patient": {"id": "P"},
        "lines": [
            {"line": 1, "service_date": date, "code": "27380", "units": 1, "pos": pos, "rendering_npi": "1679576722"},
            {"line": 2, "service_date": date, "code": "27540", "units": 1, "pos": pos, "rendering_npi": "1679576722"},
        ],
    }


# -- the PTP deletion date --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ptp_impact(copies: dict[str, Path], old_kb: PolicyKB, ptp_kb: PolicyKB) -> Impact:
    structure = structural_diff(load_program(KB), load_program(copies["ptp"]))
    return impact(old_kb, ptp_kb, structure, default_corpus([KB, copies["ptp"]], ROOT / "examples"))


def test_ptp_row_change_is_found_by_key_and_only_the_ptp_table_is_read(ptp_impact: Impact) -> None:
    tables = {t.relation: t for t in ptp_impact.structure.tables}
    assert [t for t, d in tables.items() if d.bytes_changed] == ["ptp"]
    assert all(d.method == "unchanged (same bytes)" for t, d in tables.items() if t != "ptp")
    (row,) = tables["ptp"].rows
    assert row.status == "changed" and row.key == ("27380", "27540")
    columns = tables["ptp"].columns
    assert row.to_dict(columns)["changed_columns"] == ["deletion_date"]
    assert row.old is not None and row.new is not None
    assert row.old[columns.index("deletion_date")] == "2024-06-30"
    assert row.new[columns.index("deletion_date")] == "2024-05-31"
    assert not ptp_impact.structure.rules and not ptp_impact.structure.facts


def test_ptp_change_flips_27540_in_the_corpus_and_names_the_row(ptp_impact: Impact) -> None:
    knee = [lc for lc in ptp_impact.lines if lc.source == "examples/knee-surgery-27380-27540-june-2024.json"]
    # the example is dated 2024-06-01 in POS 22: inside the period the change removes
    assert [(lc.line, lc.code, lc.old[0], lc.new[0]) for lc in knee] == [(2, "27540", "deny", "pay")]
    assert "ncci.ptp" in knee[0].old[1] and "ncci.ptp" not in knee[0].new[1]
    assert knee[0].causes == ["row ptp(27380, 27540) changed"]
    # 27380 is column 2 of the active reverse edit: no corpus line with code 27380 changes
    assert all(lc.code != "27380" for lc in ptp_impact.lines)
    assert set(ptp_impact.by_cause()) == {"row ptp(27380, 27540) changed"}
    assert not ptp_impact.witnesses  # the corpus shows the change


def test_ptp_witness_when_no_corpus_claim_exercises_the_row(
    copies: dict[str, Path], old_kb: PolicyKB, ptp_kb: PolicyKB, tmp_path: Path
) -> None:
    jsonl = tmp_path / "claims.jsonl"
    jsonl.write_text((ROOT / "examples/office-96372-with-em.json").read_text().replace("\n", "") + "\n")
    structure = structural_diff(load_program(KB), load_program(copies["ptp"]))
    imp = impact(old_kb, ptp_kb, structure, read_claims_jsonl(jsonl))
    assert imp.lines == []
    (w,) = imp.witnesses
    assert w.found and w.change == "row ptp(27380, 27540) changed"
    assert w.claim is not None
    lines = w.claim["lines"]
    assert sorted(ln["code"] for ln in lines) == ["27380", "27540"]
    assert len({(ln["service_date"], ln["rendering_npi"]) for ln in lines}) == 1
    date = lines[0]["service_date"]
    assert "2024-05-31" < date <= "2024-06-30"  # inside the period the change takes away
    # checked here by running both KBs, not by trusting the search
    claim = parse_claim(w.claim)
    old, new = outcomes(old_kb.adjudicate(claim)), outcomes(ptp_kb.adjudicate(claim))
    n27540 = next(ln["line"] for ln in lines if ln["code"] == "27540")
    n27380 = next(ln["line"] for ln in lines if ln["code"] == "27380")
    assert old[n27540][0] == "deny" and "ncci.ptp" in old[n27540][1]
    assert new[n27540][0] == "pay"
    assert "ncci.ptp" in old[n27380][1] and "ncci.ptp" in new[n27380][1]


def test_ptp_flip_matches_the_dates_of_the_domain_notes(old_kb: PolicyKB, ptp_kb: PolicyKB) -> None:
    """Decided from the notes, independent of the diff: June 2024 flips, May and July do not."""
    for date, flips in (("2024-05-15", False), ("2024-06-15", True), ("2024-07-15", False)):
        claim = parse_claim(_claim(date, "22"))
        old, new = outcomes(old_kb.adjudicate(claim)), outcomes(ptp_kb.adjudicate(claim))
        assert (old[2][0] != new[2][0]) is flips, date


# -- facility_em_pos facts ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pos_impact(copies: dict[str, Path], old_kb: PolicyKB, pos_kb: PolicyKB) -> Impact:
    structure = structural_diff(load_program(KB), load_program(copies["pos"]))
    return impact(old_kb, pos_kb, structure, default_corpus([KB, copies["pos"]], ROOT / "examples"))


def test_removed_facts_and_their_corpus_lines(pos_impact: Impact) -> None:
    s = pos_impact.structure
    assert [(f.relation, f.values, f.status) for f in s.facts] == [
        ("facility_em_pos", ("22",), "removed"),
        ("facility_em_pos", ("61",), "removed"),
    ]
    assert not s.rules and not s.row_changes()
    ex = {lc.line: lc for lc in pos_impact.lines if lc.source == "examples/facility-96372-pos22.json"}
    # the injection stays denied (facility POS) but loses inj.facility_em; the E/M, without 25,
    # goes from paid to denied under the NCCI edit 96372/99213
    assert ex[1].old[0] == ex[1].new[0] == "deny"
    assert "inj.facility_em" in ex[1].old[1] and "inj.facility_em" not in ex[1].new[1]
    assert ex[1].causes == ['fact facility_em_pos("22") removed']
    assert (ex[2].code, ex[2].old, ex[2].new[0]) == ("99213", ("pay", ()), "deny")
    assert "ncci.ptp" in ex[2].new[1]
    assert ex[2].causes == ['fact facility_em_pos("22") removed (through another line of the claim)']
    assert 'fact facility_em_pos("61") removed' not in {c for lc in pos_impact.lines for c in lc.causes}


def test_witness_for_the_fact_no_corpus_claim_exercises(pos_impact: Impact, old_kb: PolicyKB, pos_kb: PolicyKB) -> None:
    (w,) = pos_impact.witnesses
    assert w.change == 'fact facility_em_pos("61") removed' and w.found and w.claim is not None
    assert {ln["pos"] for ln in w.claim["lines"]} == {"61"}
    codes = {ln["code"] for ln in w.claim["lines"]}
    assert "96372" in codes and codes & {"99212", "99213", "99214", "99215"}
    claim = parse_claim(w.claim)
    old, new = outcomes(old_kb.adjudicate(claim)), outcomes(pos_kb.adjudicate(claim))
    em = next(ln["line"] for ln in w.claim["lines"] if ln["code"].startswith("992"))
    assert old[em][0] == "pay" and new[em][0] == "deny" and "ncci.ptp" in new[em][1]


def test_cli_json_and_text(copies: dict[str, Path], old_kb: PolicyKB, pos_kb: PolicyKB) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["diff", str(KB), str(copies["pos"]), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["structure"]["counts"]["facts"] == {"added": 0, "removed": 2, "changed": 0}
    assert [w["found"] for w in data["witnesses"]] == [True]
    text = runner.invoke(main, ["diff", str(KB), str(copies["pos"])])
    assert text.exit_code == 0
    assert 'removed  facility_em_pos("61")' in text.output and "Witness claims" in text.output


def test_cli_parses_nothing_the_cache_holds(
    copies: dict[str, Path], old_kb: PolicyKB, pos_kb: PolicyKB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The structural diff reads the programs the two KBs opened with: with both already opened
    once (the fixtures), the parsed-module cache holds every module, so no file is parsed again
    (each parse of the bundled KB is most of a second)."""
    import engine.syntax.parser as parser

    parsed: list[str] = []
    real = parser.parse_bytes
    monkeypatch.setattr(parser, "parse_bytes", lambda raw, shown: parsed.append(shown) or real(raw, shown))
    res = CliRunner().invoke(main, ["diff", str(KB), str(copies["pos"]), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["structure"]["counts"]["facts"] == {"added": 0, "removed": 2, "changed": 0}
    assert parsed == []


def test_cli_bad_input_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["diff", "no-such-dir-or-rev", str(KB)])
    assert res.exit_code == 2
    assert "no-such-dir-or-rev" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\nnot json\n')
    with pytest.raises(Exception, match=r"bad.jsonl:2: not valid JSON"):
        read_claims_jsonl(bad)


# -- rule matching, no KB loading ----------------------------------------------------------------


def _prog(body: str):
    return program_from_text({"r.dl": ".decl a(x: number)\n.decl b(x: number)\n.decl c(x: number)\n" + body})


def test_rules_match_by_id_else_by_normalised_body() -> None:
    same = diff_rules(_prog("a(x) :- b(x), c(x).\n"), _prog("a(y) :- c(y), b(y).\n"))
    assert same == []  # renamed variables, reordered body
    changed = diff_rules(_prog("a(x) :- b(x).\n"), _prog("a(x) :- c(x).\n"))
    assert sorted(c.status for c in changed) == ["added", "removed"]
    with_id = diff_rules(
        _prog("/** @id r.one\n @title T */\na(x) :- b(x).\n"), _prog("/** @id r.one\n @title U */\na(x) :- c(x).\n")
    )
    assert [(c.status, c.key, c.what) for c in with_id] == [("changed", "r.one", ["body", "@title"])]


def test_default_corpus_reads_cases_and_examples() -> None:
    corpus: list[CorpusClaim] = default_corpus([KB], ROOT / "examples")
    assert any(c.source.startswith("kb/ncci/edits.cases.json#") for c in corpus)
    assert any(c.source == "examples/knee-surgery-27380-27540-june-2024.json" for c in corpus)


def test_git_revision_is_materialised_with_git_archive(tmp_path: Path) -> None:
    """OLD as a revision of a repository holding the KB: `git archive` into a temp dir, removed after."""
    import subprocess

    from engine.diff import resolve_source

    repo = tmp_path / "repo"
    shutil.copytree(KB, repo / "kb", ignore=shutil.ignore_patterns("tables"))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "kb"], check=True)
    subprocess.run([*git, "commit", "-qm", "kb"], check=True)
    dl = repo / "kb" / "policy" / "injection_96372.dl"
    dl.write_text(dl.read_text(encoding="utf-8").replace('facility_em_pos("61").\n', ""), encoding="utf-8")
    src = resolve_source("HEAD", repo / "kb")
    try:
        assert src.how.startswith("git revision ") and "git archive" in src.how
        assert src.path.name == "kb" and src.path != repo / "kb"
        facts = structural_diff(load_program(src.path), load_program(repo / "kb")).facts
        assert [(f.relation, f.values, f.status) for f in facts] == [("facility_em_pos", ("61",), "removed")]
    finally:
        src.cleanup()
    assert not src.path.exists()


def test_rule_body_change_gets_a_witness_from_the_rules_constants(tmp_path: Path, old_kb: PolicyKB) -> None:
    """ncci.mue.line changed from `u > limit` to `u > limit + 1`: exactly limit + 1 units of a
    code whose MUE has MAI 1 was denied and now pays. No corpus claim bills such units, so the
    witness comes from the stored MUE rows the rule's constant (MAI 1) selects."""
    import csv

    kb = tmp_path / "kb"
    shutil.copytree(KB, kb, ignore=shutil.ignore_patterns("tables"))
    (kb / "tables").symlink_to(KB / "tables")
    edits = kb / "ncci" / "edits.dl"
    before = "mue(c, limit, 1, _), u > limit."
    text = edits.read_text(encoding="utf-8")
    assert text.count(before) == 1
    edits.write_text(text.replace(before, "mue(c, limit, 1, _), u > limit + 1."), encoding="utf-8")
    jsonl = tmp_path / "one.jsonl"
    jsonl.write_text((ROOT / "examples/office-96372-with-em.json").read_text().replace("\n", "") + "\n")
    new_kb = PolicyKB.open(kb)
    imp = impact(old_kb, new_kb, structural_diff(load_program(KB), load_program(kb)), read_claims_jsonl(jsonl))
    assert [(r.key, r.status, r.what) for r in imp.structure.rules] == [("ncci.mue.line", "changed", ["body"])]
    assert imp.lines == []
    (w,) = imp.witnesses
    assert w.change == "rule ncci.mue.line" and w.found and w.claim is not None
    (line,) = w.claim["lines"]
    with (KB / "tables" / "ncci_mue_practitioner.csv").open(encoding="utf-8") as fh:
        mue = {r["code"]: r for r in csv.DictReader(fh)}
    assert mue[line["code"]]["mai"] == "1"
    assert line["units"] == int(mue[line["code"]]["mue_value"]) + 1
    claim = parse_claim(w.claim)
    assert outcomes(old_kb.adjudicate(claim))[1] == ("deny", ("ncci.mue.line",))
    assert outcomes(new_kb.adjudicate(claim))[1][0] == "pay"


@pytest.mark.parametrize(
    "rows_new",
    [
        ["A1,2", "B1,3", "C1,9", "D1,4"],  # sorted: merged in one pass
        ["D1,4", "C1,9", "A1,2", "B1,3"],  # unsorted: compared by row hashes
    ],
)
def test_table_rows_by_key_sorted_or_not(tmp_path: Path, rows_new: list[str]) -> None:
    decl = '/** @pattern ^[A-Z][0-9]$ */\n.type K <: symbol\n.decl t(k: K, n: number)\n.input t(filename="t.csv")\n'
    sides = {}
    for name, rows in (("old", ["A1,1", "B1,3", "C1,3"]), ("new", rows_new)):
        d = tmp_path / name / "kb"
        d.mkdir(parents=True)
        (d / "t.dl").write_text(decl, encoding="utf-8")
        (d / "t.csv").write_text("k,n\n" + "\n".join(rows) + "\n", encoding="utf-8")
        sides[name] = load_program(d)
    (table,) = structural_diff(sides["old"], sides["new"]).tables
    assert table.method == ("sorted merge" if rows_new == sorted(rows_new) else "row hashes")
    assert [(r.status, r.key, r.old, r.new) for r in table.rows] == [
        ("changed", ("A1",), ("A1", "1"), ("A1", "2")),
        ("changed", ("C1",), ("C1", "3"), ("C1", "9")),
        ("added", ("D1",), None, ("D1", "4")),
    ]
