"""What a loaded KB knows of its rules and codes: one implementation for `policykb rules`,
`policykb code` and the HTTP service's `/v1/rules` and `/v1/codes` (engine/service/catalog.py).

Everything here reads a loaded `engine.api.PolicyKB` and returns plain data (dicts and lists,
JSON-ready); rendering is elsewhere. Rows are read through the store's keyed lookups and keyed
by the attribute names the KB declares, so the columns come from the KB, not from this module.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.syntax import nodes as A

# The relations behind a code's summary. Other stored relations keyed by a Code-typed first
# column are listed under `tables` as they are.
PTP, MUE, AOC, AOC_PRIMARY = "ptp", "mue", "aoc_code", "aoc_primary"
DESCRIPTIONS = (("cpt_code", "description"), ("hcpcs", "long_description"), ("hcpcs", "short_description"))
CATEGORY, RANGES, KNOWN = "code_category", "in_range", "known_code"
PTP_STATUSES = ("all", "active", "deleted")


class UnknownName(LookupError):
    """An unknown rule id or code, with the names a person most likely meant."""

    def __init__(self, kind: str, name: str, suggestions: list[str], detail: str):
        super().__init__(detail)
        self.kind = kind
        self.name = name
        self.suggestions = suggestions
        self.detail = detail


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int
    status: str


# --- rules ----------------------------------------------------------------------------------


def rule_ids(kb: Any) -> list[str]:
    return sorted(kb.adjudicator.rules)


def rule_summary(kb: Any, rule_id: str) -> dict[str, Any]:
    rule = kb.adjudicator.rules[rule_id].rule
    doc = rule.doc
    return {
        "id": rule_id,
        "title": doc.get("title") or rule_id,
        "kind": doc.get("kind") or "policy",
        "outcome": rule.head.pred,
        "severity": doc.get("severity") or rule.head.pred,
        "group": doc.get("group") or "",
        "carc": doc.get("carc") or "",
        "rarc": (doc.get("rarc") or "").split(),
        "message": doc.get("message") or "",
        "sources": [e.value for e in doc.entries if e.key == "source"],
        "location": f"{rule.loc.path}:{rule.loc.line}",
    }


def rules(kb: Any, kind: str | None = None) -> list[dict[str, Any]]:
    """Every rule's summary, by id; only those of `kind` when given."""
    out = [rule_summary(kb, rid) for rid in rule_ids(kb)]
    return [r for r in out if kind is None or r["kind"] == kind]


def rule(kb: Any, rule_id: str) -> dict[str, Any]:
    """One rule: its summary, annotations, clauses (source text and location) and remedies."""
    if rule_id not in kb.adjudicator.rules:
        raise unknown_rule(rule_id, rule_ids(kb))
    out = rule_summary(kb, rule_id)
    clauses = [r for r in kb.kb.program.rules if r.rule_id == rule_id]
    out["annotations"] = [{"key": e.key, "value": e.value} for e in clauses[0].doc.entries]
    out["clauses"] = [{"text": r.text or str(r), "location": f"{r.loc.path}:{r.loc.line}"} for r in clauses]
    out["remedies"] = [e.value for e in clauses[0].doc.entries if e.key == "remedy"]
    return out


def unknown_rule(rule_id: str, ids: list[str]) -> UnknownName:
    close = difflib.get_close_matches(rule_id, ids, n=5, cutoff=0.6)
    stem = rule_id.split(".")[0]
    close += [i for i in ids if i.startswith(stem + ".") and i not in close][: max(0, 5 - len(close))]
    return UnknownName("rule", rule_id, close, f"no rule with id {rule_id!r}")


@dataclass(frozen=True)
class CaseRef:
    """A policy case that names a rule (in `about` or an expected line's rules)."""

    name: str
    path: str
    line: int
    expected: str  # e.g. "line 3: deny" or "" when the rule is only in `about`


def cases_mentioning(root: Path, rule_id: str) -> list[CaseRef]:
    """The policy cases under `root` whose `about` or expectations name `rule_id`."""
    out = []
    for path in sorted(root.rglob("*.cases.json")):
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except ValueError:
            continue
        cases = data.get("cases", []) if isinstance(data, dict) else []
        for i, case in enumerate(c for c in cases if isinstance(c, dict)):
            name = str(case.get("name", f"case {i + 1}"))
            raw_expect = case.get("expect")
            expect: dict[str, Any] = raw_expect if isinstance(raw_expect, dict) else {}
            lines = [
                f"line {n}: {e.get('decision', '?')}"
                for n, e in expect.items()
                if isinstance(e, dict) and rule_id in (e.get("rules") or [])
            ]
            if lines or rule_id in (case.get("about") or []):
                at = text.find(f'"name": {json.dumps(name)}')
                out.append(
                    CaseRef(
                        name, path.relative_to(root).as_posix(), text.count("\n", 0, max(at, 0)) + 1, "; ".join(lines)
                    )
                )
    return out


# --- codes ----------------------------------------------------------------------------------


def code(kb: Any, code: str, page: Page) -> dict[str, Any]:
    """What the KB knows of a code: description, category, ranges, MUE, add-on edits, PTP
    partners in both directions (one page of each), and every other Code-keyed table row."""
    code = code.strip().upper()
    ev = kb.evaluator
    store = kb.kb.store
    program = kb.kb.program

    def rows(relation: str, position: int = 0) -> list[dict[str, Any]]:
        if not store.has(relation) or relation not in program.decls:
            return []
        names = [a.name for a in program.decls[relation].attrs]
        return [dict(zip(names, row, strict=True)) for row in store.lookup(relation, (position,), (code,))]

    def static(relation: str) -> list[tuple[Any, ...]]:
        if relation not in kb.kb.compiled.kinds:
            return []
        args: tuple[Any, ...] = (code,) + (None,) * (len(program.decls[relation].attrs) - 1)
        return [row for _src, row in ev.lookup(relation, args)]

    tables: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(store.tables):
        decl = program.decls.get(name)
        if name in (PTP, AOC_PRIMARY) or decl is None or not decl.attrs or decl.attrs[0].type != "Code":
            continue
        found = rows(name)
        if found:
            tables[name] = found
    description = next((str(t[0][col]) for rel, col in DESCRIPTIONS if (t := tables.get(rel)) and t[0].get(col)), "")
    mue = tables.get(MUE, [None])[0]
    aoc = tables.get(AOC, [None])[0]
    primaries = sorted(str(r["primary_code"]) for r in rows(AOC_PRIMARY, 0))
    primary_of = sorted(str(r["add_on_code"]) for r in rows(AOC_PRIMARY, 1))
    as_1, as_2 = _partners(rows(PTP, 0), "column_2", page), _partners(rows(PTP, 1), "column_1", page)
    ptp = {"offset": page.offset, "limit": page.limit, "status": page.status, "column_1": as_1, "column_2": as_2}
    known = bool(static(KNOWN))
    if not known and not tables and not primary_of and not as_1["total"] and not as_2["total"]:
        raise unknown_code(kb, code)
    category = next((str(r[1]) for r in static(CATEGORY)), None)
    return {
        "code": code,
        "known": known,
        "description": description,
        "category": category,
        "ranges": sorted(str(r[1]) for r in static(RANGES)),
        "mue": ({"value": mue["mue_value"], "mai": mue["mai"], "rationale": mue["rationale"]} if mue else None),
        "add_on": ({"edit_type": aoc["edit_type"], "primaries": primaries} if aoc else None),
        "primary_for": primary_of,
        "ptp": ptp,
        "tables": tables,
    }


def _partners(found: list[dict[str, Any]], partner_col: str, page: Page) -> dict[str, Any]:
    """One direction of PTP partners, active rows first, then by partner code; one page of them."""
    active = [r for r in found if r["deletion_date"] == ""]
    chosen = (
        found
        if page.status == "all"
        else active
        if page.status == "active"
        else [r for r in found if r["deletion_date"] != ""]
    )
    chosen = sorted(chosen, key=lambda r: (r["deletion_date"] != "", r[partner_col], r["deletion_date"]))
    items = [
        {
            "partner": r[partner_col],
            "column_1": r["column_1"],
            "column_2": r["column_2"],
            "effective_date": r.get("effective_date") or None,
            "modifier_indicator": r["modifier_indicator"],
            "deletion_date": r["deletion_date"] or None,
            "active": r["deletion_date"] == "",
            "rationale": r["rationale"],
        }
        for r in chosen[page.offset : page.offset + page.limit]
    ]
    end = page.offset + len(items)
    return {
        "total": len(chosen),
        "active": len(active),
        "items": items,
        "next_offset": end if end < len(chosen) else None,
    }


def _known_codes(kb: Any) -> Iterator[str]:
    """Codes the KB's code tables list (for suggestions)."""
    store = kb.kb.store
    for rel, _col in DESCRIPTIONS[:2]:
        if store.has(rel):
            for _src, row in store.scan(rel):
                yield str(row[0])


def unknown_code(kb: Any, code: str) -> UnknownName:
    codes = sorted(set(_known_codes(kb)))
    close = difflib.get_close_matches(code, codes, n=5, cutoff=0.6)
    return UnknownName("code", code, close, f"the KB has no code list entry and no table row naming {code}")


def deciding_rules(kb: Any, info: dict[str, Any]) -> list[dict[str, str]]:
    """The id rules that can decide a line with this code, and how each reaches it: the rule (or
    a relation it reads, transitively) names the code, a range or category the code is in, or a
    table the code has rows in."""
    program = kb.kb.program
    code_ = info["code"]
    # relation -> the code's rows there (None: it has rows, not all of them at hand)
    has_rows: dict[str, list[tuple[Any, ...]] | None] = {
        rel: [tuple(r.values()) for r in found] for rel, found in info["tables"].items()
    }
    if info["ptp"]["column_1"]["total"] or info["ptp"]["column_2"]["total"]:
        has_rows[PTP] = None
    if info["add_on"] or info["primary_for"]:
        has_rows[AOC_PRIMARY] = None
    groups = {("range", r) for r in info["ranges"]}
    if info["category"]:
        groups.add(("category", info["category"]))
    by_head: dict[str, list[A.Rule]] = {}
    for r in program.rules:
        by_head.setdefault(r.head.pred, []).append(r)

    def reasons(start: A.Rule) -> list[str]:
        """Walk the relations the rule reads, transitively, keeping the number of negations on
        the way: a row or a name behind an odd number of them cannot bring the outcome about."""
        seen: set[tuple[str, bool]] = set()
        todo: list[tuple[A.Rule, bool]] = [(start, False)]
        found: list[str] = []
        while todo:
            r, negated = todo.pop()
            for atom, neg in _atoms(r.body):
                odd = negated != neg
                consts = [a.value for a in atom.args if isinstance(a, A.Const)]
                if not odd:
                    if code_ in consts:
                        found.append(f"names {code_}")
                    if atom.pred == RANGES and any(("range", c) in groups for c in consts):
                        found.append(f"range {next(c for c in consts if ('range', c) in groups)}")
                    if atom.pred == CATEGORY and any(("category", c) in groups for c in consts):
                        found.append(f"category {info['category']}")
                    if atom.pred in has_rows and _fits(atom, has_rows[atom.pred]):
                        found.append(f"its {atom.pred} rows")
                if (atom.pred, odd) not in seen:
                    seen.add((atom.pred, odd))
                    todo.extend((x, odd) for x in by_head.get(atom.pred, []))
        return list(dict.fromkeys(found))

    out = []
    for rid in rule_ids(kb):
        why = reasons(kb.adjudicator.rules[rid].rule)
        if why:
            out.append(
                {"id": rid, "title": kb.adjudicator.rules[rid].rule.doc.get("title") or rid, "how": "; ".join(why)}
            )
    return out


def _fits(atom: A.Atom, rows: list[tuple[Any, ...]] | None) -> bool:
    """Some row has every constant the atom asks for (`cpt_code(c, _, "em")` fits only E/M rows)."""
    if rows is None:
        return True
    return any(
        len(row) == len(atom.args)
        and all(not isinstance(a, A.Const) or str(a.value) == str(v) for a, v in zip(atom.args, row, strict=True))
        for row in rows
    )


def _atoms(body: tuple[A.Literal, ...]) -> Iterator[tuple[A.Atom, bool]]:
    """The atoms a body reads, each with whether it is negated."""
    for lit in body:
        if isinstance(lit, A.Atom):
            yield lit, False
        elif isinstance(lit, A.Negation):
            yield lit.atom, True
        elif isinstance(lit, A.Aggregate):
            yield from _atoms(lit.body)
