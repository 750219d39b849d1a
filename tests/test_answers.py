"""Answers a biller can use: one primary reason per line, `because` sentences a coder can act
on, citations that name table, release and row, and remedies that are honest (null when not
searched, never advising what the KB denies, never upcoding, with their condition in words).

The expectations are decided from the data (the NCCI table rows, the example claims, the
rules' annotations), not copied from output.
"""

from __future__ import annotations

import copy
import csv
import gzip
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api import PolicyKB
from engine.claims import Claim, load_claims, parse_claim
from engine.explain import remedies as remedy_search
from engine.explain.result import Reason, assign_roles
from tests.test_policy_cases import load_cases

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def kb() -> PolicyKB:
    return PolicyKB.open(ROOT / "kb")


def _example(name: str) -> Claim:
    (claim,) = load_claims(EXAMPLES / f"{name}.json")
    return claim


def _all_claims() -> list[tuple[str, Claim]]:
    items = [(c.id, parse_claim(c.claim)) for c in load_cases()]
    items += [(p.stem, load_claims(p)[0]) for p in sorted(EXAMPLES.glob("*.json"))]
    return items


def _precedence_of(kb: PolicyKB) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for r in kb.kb.program.rules:
        if r.rule_id:
            p = r.doc.get("precedence")
            out[r.rule_id] = int(p) if p is not None else None
    return out


# ---- One primary reason per line ---------------------------------------------------------


def test_primary_is_the_lowest_precedence_denial_and_null_on_paid_lines(kb: PolicyKB) -> None:
    prec = _precedence_of(kb)
    checked = 0
    for name, claim in _all_claims():
        for ln in kb.adjudicate(claim, proofs=False).to_dict()["lines"]:
            denials = [r["rule"] for r in ln["reasons"] if r["severity"] == "deny" and not r.get("overridden_by")]
            roles = [r["role"] for r in ln["reasons"]]
            if not denials:
                assert ln["decision"] == "pay" and ln["primary"] is None, (name, ln["line"])
                assert "primary" not in roles and "supporting" not in roles, (name, ln["line"], roles)
                continue
            want = min(denials, key=lambda rid: (prec.get(rid) is None, prec.get(rid) or 0, rid))
            assert ln["decision"] == "deny" and ln["primary"] == want, (name, ln["line"], ln["primary"], want)
            assert roles.count("primary") == 1 and ln["reasons"][0]["rule"] == want, (name, ln["line"], roles)
            assert roles.count("supporting") == len(denials) - 1
            checked += 1
    assert checked > 20


def _reason(rule: str, severity: str = "deny", precedence: int | None = None, by: str | None = None) -> Reason:
    return Reason(rule, rule, "policy", severity, "CO", "16", [], "m.", [], precedence=precedence, overridden_by=by)


def test_roles_order_denials_by_precedence_then_rule_id() -> None:
    primary, ordered = assign_roles(
        [
            _reason("z.no_precedence"),
            _reason("b.second", precedence=20),
            _reason("a.warn", "warn", 1),
            _reason("c.first", precedence=10),
            _reason("a.tie", precedence=20),
            _reason("x.set_aside", precedence=1, by="c.first"),
        ]
    )
    assert primary == "c.first"
    assert [(r.rule, r.role) for r in ordered] == [
        ("c.first", "primary"),
        ("a.tie", "supporting"),
        ("b.second", "supporting"),
        ("z.no_precedence", "supporting"),
        ("a.warn", "warning"),
        ("x.set_aside", "overridden"),
    ]
    assert assign_roles([_reason("a.warn", "warn")])[0] is None


@pytest.fixture(scope="module")
def kb_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of kb/ whose rule annotations a test may edit (the tables are shared)."""
    root = tmp_path_factory.mktemp("kbcopy") / "kb"
    shutil.copytree(ROOT / "kb", root, ignore=shutil.ignore_patterns("tables"))
    (root / "tables").symlink_to(ROOT / "kb" / "tables", target_is_directory=True)
    yield root


def _annotate(path: Path, rule_id: str, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    marker = f" * @id {rule_id}\n"
    assert marker in text, f"{rule_id} not in {path}"
    path.write_text(text.replace(marker, marker + f" * {line}\n"), encoding="utf-8")


def _set_precedence(path: Path, rule_id: str, value: int) -> None:
    """Rewrite the @precedence of one rule's doc comment."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f" * @id {rule_id}\n")
    end = text.index("*/", start)
    doc = re.sub(r"@precedence \d+", f"@precedence {value}", text[start:end], count=1)
    assert doc != text[start:end], f"{rule_id} has no @precedence"
    path.write_text(text[:start] + doc + text[end:], encoding="utf-8")


def test_precedence_written_in_the_kb_chooses_the_primary(kb: PolicyKB, kb_copy: Path) -> None:
    # facility POS 22, 96372 + 99213: inj.facility_em (@precedence 20) and inj.facility_pos (21)
    # both deny line 1; fee.facility_na's CO-58 is set aside by inj.facility_pos (one per line)
    line = kb.adjudicate(_example("facility-96372-pos22"), proofs=False).line(1)
    assert line is not None and line.primary == "inj.facility_em"
    _set_precedence(kb_copy / "policy" / "injection_96372.dl", "inj.facility_pos", 10)
    pk = PolicyKB.open(kb_copy)
    line = pk.adjudicate(_example("facility-96372-pos22"), proofs=False).line(1)
    assert line is not None and line.decision == "deny"
    assert line.primary == "inj.facility_pos"
    roles = {r.rule: r.role for r in line.reasons}
    assert roles["inj.facility_pos"] == "primary" and roles["inj.facility_em"] == "supporting"
    assert roles["fee.facility_na"] == "overridden"
    # reasons in force come first, the primary leading
    in_force = [r.rule for r in line.reasons if r.role in ("primary", "supporting")]
    assert in_force == ["inj.facility_pos", "inj.facility_em"]
    assert [r.role for r in line.reasons][: len(in_force)] == ["primary", "supporting"]


# ---- because: the decisive values, in a coder's words -------------------------------------


def _ptp_row(col1: str, col2: str) -> tuple[int, dict[str, str]]:
    """The data row number (header excluded) of the PTP row for this pair, read from the table."""
    with gzip.open(ROOT / "kb" / "tables" / "ncci_ptp_practitioner.csv.gz", "rt", encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh), 1):
            if row["column_1"] == col1 and row["column_2"] == col2:
                return i, row
    raise AssertionError(f"no PTP row {col1}/{col2}")


def _because(kb: PolicyKB, name: str, line: int, rule: str) -> list[str]:
    result = kb.adjudicate(_example(name), proofs=True, remedies=True).line(line)
    assert result is not None
    reason = next(r for r in result.reasons if r.rule == rule)
    assert reason.because, f"{name} line {line} {rule}: no because"
    return reason.because


def test_because_names_the_ptp_row_release_and_the_missing_modifier_25(kb: PolicyKB) -> None:
    row_no, row = _ptp_row("96372", "99213")
    assert row["deletion_date"] == "" and row["modifier_indicator"] == "1"
    because = _because(kb, "office-96372-with-em", 2, "ncci.ptp")
    text = "\n".join(because)
    cite = next(s for s in because if f"row {row_no}:" in s)
    assert "NCCI PTP" in cite and "2024 Q3" in cite and "column 1 96372" in cite and "column 2 99213" in cite
    assert "modifier indicator 1" in cite and "no deletion date" in cite
    assert re.search(r"\bmodifier 25\b", text), text
    assert "Line 2 has no modifier" in text  # nothing on the E/M line: modifiers present, none


def test_because_names_the_deletion_date_that_keeps_an_edit_in_force(kb: PolicyKB) -> None:
    row_no, row = _ptp_row("27380", "27540")
    because = _because(kb, "knee-surgery-27380-27540-june-2024", 2, "ncci.ptp")
    assert any(f"row {row_no}:" in s and f"deletion date {row['deletion_date']}" in s for s in because), because
    claim = json.loads((EXAMPLES / "knee-surgery-27380-27540-june-2024.json").read_text())
    dos = claim["lines"][1]["service_date"]
    assert f"Checked: {dos} is on or before {row['deletion_date']}." in because


def test_because_names_the_place_of_service(kb: PolicyKB) -> None:
    claim = json.loads((EXAMPLES / "facility-96372-pos22.json").read_text())
    pos = claim["lines"][0]["pos"]
    because = _because(kb, "facility-96372-pos22", 1, "inj.facility_em")
    assert any(f"place of service {pos}" in s for s in because), because
    em = claim["lines"][1]["code"]
    assert any(s.startswith("Line 2:") and f"code {em}" in s for s in because), because


def test_because_names_the_credential_that_did_not_qualify(kb: PolicyKB) -> None:
    claim = json.loads((EXAMPLES / "unsupervised-medical-assistant.json").read_text())
    credential = claim["lines"][0]["documentation"]["administered_by"]["credential"]
    because = _because(kb, "unsupervised-medical-assistant", 1, "inj.unsupervised")
    assert any(f"value {credential}" in s and "credential" in s for s in because), because
    assert any("supervision" in s and s.startswith("Line 1 has no") for s in because), because


def test_because_names_the_units_total_and_the_mue(kb: PolicyKB) -> None:
    claim = json.loads((EXAMPLES / "mue-96372-units-summed.json").read_text())
    total = sum(ln.get("units", 1) for ln in claim["lines"] if ln["code"] == "96372")
    with open(ROOT / "kb" / "tables" / "ncci_mue_practitioner.csv", encoding="utf-8") as fh:
        limit = next(r["mue_value"] for r in csv.DictReader(fh) if r["code"] == "96372")
    because = _because(kb, "mue-96372-units-summed", 1, "ncci.mue.date_clinical")
    assert f"Checked: {total} is more than {limit}." in because
    assert any(f"MUE limit {limit}" in s and "2024 Q3" in s for s in because), because


def _datalog_leaks(kb: PolicyKB, sentence: str, variables: set[str]) -> list[str]:
    problems = []
    if re.search(r"[A-Za-z_]\(", sentence):
        problems.append("looks like an atom")
    if any(tok in sentence for tok in (":-", "!", '"', "{", "}", " != ", " = ")):
        problems.append("Datalog syntax")
    names = [n for n in kb.kb.program.decls if "_" in n]
    problems += [f"relation name {n}" for n in names if re.search(rf"\b{re.escape(n)}\b", sentence)]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"'s\b|\be\.g\.", "", sentence)))
    problems += [f"variable {v}" for v in sorted(variables & words)]
    if re.search(r"\b[a-z]+_[a-z_]+\b", sentence):
        problems.append("internal identifier")
    return problems


def test_because_sentences_contain_no_datalog(kb: PolicyKB) -> None:
    # variable names of the outcome rules (whose messages and proofs the sentences draw on) that
    # are not also words a sentence uses: one letter (but "a") or with a digit/underscore. Helper
    # rules' one-letter names (`b` for a BETOS code) would flag CMS text such as "vitamin b-12".
    variables = {
        v.name
        for r in kb.kb.program.rules
        if r.rule_id
        for v in _vars(r)
        if (len(v.name) == 1 and v.name != "a") or re.search(r"[0-9_]", v.name)
    }
    bad = []
    sentences = 0
    for name, claim in _all_claims():
        for ln in kb.adjudicate(claim, proofs=True, remedies=False).lines:
            for r in ln.reasons:
                assert r.because is not None
                for s in r.because:
                    sentences += 1
                    if not (s[:1].isupper() and s.endswith(".")):
                        bad.append(f"{name} {r.rule}: not a sentence: {s!r}")
                    bad += [f"{name} {r.rule}: {p}: {s!r}" for p in _datalog_leaks(kb, s, variables)]
    assert sentences > 100
    assert not bad, "\n".join(bad[:30])


def _vars(rule: Any) -> Iterator[Any]:
    from engine.syntax import nodes as A

    def walk(obj: Any) -> Iterator[Any]:
        if isinstance(obj, A.Var):
            if not obj.anonymous:
                yield obj
        elif isinstance(obj, (tuple, list)):
            for x in obj:
                yield from walk(x)
        elif hasattr(obj, "__dataclass_fields__") and not isinstance(obj, A.Const):
            for f in obj.__dataclass_fields__:
                if f != "loc":
                    yield from walk(getattr(obj, f))

    yield from walk(rule.head)
    yield from walk(rule.body)


def test_citations_name_table_release_row_and_guidance_anchor(kb: PolicyKB) -> None:
    row_no, _row = _ptp_row("96372", "99213")
    line = kb.adjudicate(_example("office-96372-with-em"), proofs=True).line(2)
    assert line is not None
    cites = line.reasons[0].citations
    ptp = [c for c in cites if c["kind"] == "table" and c["row"] == row_no]
    assert ptp and ptp[0]["release"] and "2024 Q3" in str(ptp[0]["release"])
    assert ptp[0]["values"]["column_1"] == "96372" and ptp[0]["values"]["column_2"] == "99213"
    facility = kb.adjudicate(_example("facility-96372-pos22"), proofs=True).line(1)
    assert facility is not None
    rule = next(r for r in kb.kb.program.rules if r.rule_id == "inj.facility_em")
    ids = (rule.doc.get("guidance") or "").split()
    assert ids, "inj.facility_em cites no guidance statement"
    reason = next(r for r in facility.reasons if r.rule == "inj.facility_em")
    links = {str(c["id"]): str(c["link"]) for c in reason.citations if c["kind"] == "guidance"}
    assert set(links) == set(ids)
    site = (ROOT / "site" / "guidance.md").read_text(encoding="utf-8")
    for gid, link in links.items():
        page, _, anchor = link.partition("#")
        assert page == "guidance.html" and f"{{#{anchor}}}" in site, (gid, link)


# ---- Remedies -----------------------------------------------------------------------------


def test_remedies_are_null_when_not_searched_and_a_list_when_searched(kb: PolicyKB) -> None:
    claim = _example("office-96372-with-em")
    plain = kb.adjudicate(claim, proofs=False, remedies=False).to_dict()
    searched = kb.adjudicate(claim, proofs=False, remedies=True).to_dict()
    for ln in plain["lines"]:
        for r in ln["reasons"]:
            assert r["remedies"] is None and r["because"] is None
    reason = searched["lines"][1]["reasons"][0]
    assert isinstance(reason["remedies"], list) and reason["remedies"]
    # searched and found nothing: an empty list (99211 with 96372 is indicator 0)
    r99211 = kb.adjudicate(_example("office-99211-with-96372"), proofs=False, remedies=True).line(2)
    assert r99211 is not None and r99211.reasons[0].remedies == []


def test_remedies_carry_the_rules_condition_in_words(kb: PolicyKB) -> None:
    rule = next(r for r in kb.kb.program.rules if r.rule_id == "ncci.ptp")
    condition = " ".join((rule.doc.get("remedy_condition") or "").split())
    assert condition
    line = kb.adjudicate(_example("office-96372-with-em"), proofs=False, remedies=True).line(2)
    assert line is not None
    assert [m.get("condition") for m in line.reasons[0].remedies or []] == [condition]


def _apply(claim_json: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
    """Apply a remedy's action to the claim JSON, independently of the engine's transforms."""
    out = copy.deepcopy(claim_json)
    ln = next(x for x in out["lines"] if x["line"] == action["line"])
    if "add_modifier" in action:
        ln["modifiers"] = [*ln.get("modifiers", []), action["add_modifier"]]
    elif "set_units" in action:
        ln["units"] = action["set_units"]
    elif "replace_code" in action:
        ln["code"] = action["replace_code"]
    elif "replace_modifier" in action:
        mods = [action["with"] if m == action["replace_modifier"] else m for m in ln.get("modifiers", [])]
        ln["modifiers"] = list(dict.fromkeys(mods))
    else:
        raise AssertionError(f"unknown remedy action {action}")
    return out


def _in_force(result: dict[str, Any]) -> dict[int, set[str]]:
    return {
        ln["line"]: {r["rule"] for r in ln["reasons"] if r["severity"] == "deny" and not r.get("overridden_by")}
        for ln in result["lines"]
    }


def test_every_remedy_pays_the_line_and_denies_nothing_new(kb: PolicyKB) -> None:
    """Re-adjudicate each suggested change: the line must pay and no other line may gain a denial."""
    checked = 0
    sources = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    sources += [c.claim for c in load_cases()]
    for claim_json in sources:
        before = kb.adjudicate(parse_claim(claim_json), proofs=False, remedies=True).to_dict()
        for ln in before["lines"]:
            for r in ln["reasons"]:
                for m in r["remedies"] or []:
                    after = _in_force(
                        kb.adjudicate(parse_claim(_apply(claim_json, m["action"])), proofs=False).to_dict()
                    )
                    assert not after[ln["line"]], (claim_json["id"], ln["line"], m["change"], after)
                    old = _in_force(before)
                    for other, rules in after.items():
                        assert rules <= old.get(other, set()), (claim_json["id"], m["change"], other, rules)
                    checked += 1
    assert checked >= 10


def test_a_remedy_never_moves_to_a_more_valuable_code(kb_copy: Path) -> None:
    # In a copy of the KB, let mod.25_not_em suggest billing the injection as an E/M (upcoding):
    # 96372-25 billed as 99214-25 would pass every rule, so only the value guard stops it.
    _annotate(kb_copy / "policy" / "injection_96372.dl", "mod.25_not_em", "@remedy replace-code 99214")
    pk = PolicyKB.open(kb_copy)
    line = pk.adjudicate(_example("modifier-25-on-injection"), proofs=False, remedies=True).line(1)
    assert line is not None
    reason = next(r for r in line.reasons if r.rule == "mod.25_not_em")
    assert not any(m["action"].get("replace_code") == "99214" for m in reason.remedies or [])  # type: ignore[union-attr]
    blocked = [b for b in reason.blocked_options if b["action"].get("replace_code") == "99214"]  # type: ignore[union-attr]
    assert blocked and "more valuable" in str(blocked[0]["why"])
    # without the guard the same change would have been offered: the guard is what stops it
    claim = _example("modifier-25-on-injection")
    found, _ = remedy_search.find(
        claim, claim.lines[0], "mod.25_not_em", ["replace-code 99214"], {}, [], pk.adjudicator.denials
    )
    assert [m["change"] for m in found] == ["bill line 1 as 99214 instead of 96372"]


def test_higher_value_compares_em_levels(kb: PolicyKB) -> None:
    is_em = kb.adjudicator._is_em
    assert remedy_search.higher_value("99213", "99214", is_em)
    assert not remedy_search.higher_value("99214", "99213", is_em)
    assert remedy_search.higher_value("96372", "99211", is_em)
    assert not remedy_search.higher_value("96372", "90471", is_em)  # the right code for a vaccine, named by the rule
    assert not remedy_search.higher_value("96372", "96401", is_em)


def test_a_change_that_breaks_another_line_is_blocked_not_offered() -> None:
    """The search judges each change by the whole claim: paying line 2 by denying line 1 is no remedy."""
    claim = _example("office-96372-with-em")

    def adjudicate(changed: Claim) -> dict[int, set[str]]:
        mods = {ln.line: ln.modifiers for ln in changed.lines}
        if "25" in mods[2]:
            return {1: {"some.rule"}}  # pretend modifier 25 on the E/M gets the injection denied
        return {2: {"ncci.ptp"}} if "XU" not in mods[2] else {}

    found, blocked = remedy_search.find(
        claim, claim.lines[1], "ncci.ptp", ["add-modifier 25 XU"], {}, [], adjudicate, before={2: {"ncci.ptp"}}
    )
    assert [m["change"] for m in found] == ["add modifier XU to line 2"]
    assert blocked == [
        {
            "change": "add modifier 25 to line 2",
            "action": {"add_modifier": "25", "line": 2},
            "blocked_by": ["some.rule"],
            "why": "line 1 would then be denied by some.rule",
        }
    ]


# ---- The site's guidance page ---------------------------------------------------------------


def test_guidance_page_lists_every_statement_with_its_rules_or_reason(kb: PolicyKB) -> None:
    from engine.syntax import nodes as A

    facts = {f.atom.pred: [] for f in kb.kb.program.facts}
    for f in kb.kb.program.facts:
        facts[f.atom.pred].append(tuple(a.value for a in f.atom.args if isinstance(a, A.Const)))
    statements = {row[0]: row for row in facts.get("guidance_statement", [])}
    reasons = {row[0]: row[1] for row in facts.get("guidance_undecidable", [])}
    assert statements, "no guidance_statement facts in the KB"
    cited: dict[str, list[str]] = {}
    for r in kb.kb.program.rules:
        for gid in (r.doc.get("guidance") or "").split():
            cited.setdefault(gid, []).append(str(r.rule_id))
    assert set(cited) <= set(statements), f"rules cite unknown statements: {sorted(set(cited) - set(statements))}"
    from engine.docs.build import render

    site = {path: data.decode() for path, data in render(ROOT / "kb")[0].items()}  # generated at build time
    page = site["guidance.md"]
    sections = dict(re.findall(r"^## (G-\S+) \{#[^}]+\}\n(.*?)(?=^## |\Z)", page, re.S | re.M))
    assert set(sections) == set(statements)
    for gid, (_id, _section, statement) in statements.items():
        body = sections[gid]
        assert str(statement).replace("_", "\\_") in body or str(statement) in body, gid
        for rule_id in cited.get(gid, []):
            assert f"(rules/{rule_id}.md)" in body, (gid, rule_id)
            rule_page = site[f"rules/{rule_id}.md"]
            assert f"(../guidance.md#{gid.lower()})" in rule_page, (rule_id, gid)
        if gid not in cited:
            assert gid in reasons and "Not decidable from a claim" in body, f"{gid}: neither a rule nor a reason"
