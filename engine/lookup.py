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

from engine.docroles import DocRole, fill, roles_of
from engine.syntax import nodes as A

# Which relation plays which part (code lists, per-code facts, pair edits, categories ...) comes
# from the KB's `@docs` roles (engine/docroles.py), as on the site's code pages: no relation of
# the bundled KB is named here.
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


def _roles(kb: Any, role: str) -> list[DocRole]:
    """The KB's `@docs` roles of one kind, parsed once per loaded KB (kept on it: a service
    answers many look-ups from one KB)."""
    by_role: dict[str, list[DocRole]] | None = getattr(kb, "_docs_roles", None)
    if by_role is None:
        by_role = {}
        for r in roles_of(kb.kb.program.decls):
            by_role.setdefault(r.role, []).append(r)
        kb._docs_roles = by_role
    return by_role.get(role, [])


def edit_columns(kb: Any) -> list[tuple[str, int]]:
    """(relation, position) of each pair edit's second column: a code's partners are looked up
    by it too, so a service builds that index once at start."""
    out = []
    for r in _roles(kb, "code_edit"):
        names = [a.name for a in kb.kb.program.decls[r.relation].attrs]
        out.append((r.relation, names.index(r.col("second"))))
    return out


def code(kb: Any, code: str, page: Page) -> dict[str, Any]:
    """What the KB knows of a code: description, category, ranges, per-code facts (e.g. MUE,
    add-on status), linked codes (e.g. add-on primaries) both ways, pair-edit partners in both
    directions (one page of each), and every other Code-keyed table row. Relations and columns
    come from the KB's `@docs` roles."""
    code = code.strip().upper()
    ev = kb.evaluator
    store = kb.kb.store
    program = kb.kb.program

    def rows(relation: str, column: str) -> list[dict[str, Any]]:
        decl = program.decls.get(relation)
        if decl is None or not store.has(relation):
            return []
        names = [a.name for a in decl.attrs]
        return [dict(zip(names, row, strict=True)) for row in store.lookup(relation, (names.index(column),), (code,))]

    def derived(role: DocRole) -> list[dict[str, Any]]:
        if role.relation not in kb.kb.compiled.kinds:
            return []
        names = [a.name for a in program.decls[role.relation].attrs]
        args = tuple(code if n == role.col("code") else None for n in names)
        return [dict(zip(names, row, strict=True)) for _src, row in ev.lookup(role.relation, args)]

    lists = _roles(kb, "code_list")
    listed = [(r, found) for r in lists if (found := rows(r.relation, r.col("code")))]
    description = next((str(f[0][c]) for r, f in listed for c in r.cols("description") if f[0].get(c)), "")
    facts = [
        {"relation": r.relation, "label": r.text("label"), "text": fill(r.text("text"), row), "row": row}
        for r in _roles(kb, "code_fact")
        for row in rows(r.relation, r.col("code"))
    ]
    links: list[dict[str, Any]] = []
    for r in _roles(kb, "code_link"):
        for label, mine, other in (
            (r.text("label"), r.col("code"), r.col("other")),
            (r.text("reverse"), r.col("other"), r.col("code")),
        ):
            linked = sorted({str(x[other]) for x in rows(r.relation, mine)})
            if linked:
                links.append({"relation": r.relation, "label": label, "codes": linked})
    edits: list[dict[str, Any]] = []
    for r in _roles(kb, "code_edit"):
        cols = {k: r.col(k) for k in ("first", "second", "deleted", "indicator", "reason")}
        first, second = rows(r.relation, cols["first"]), rows(r.relation, cols["second"])
        edits.append(
            {
                "relation": r.relation,
                "title": _title(program.decls[r.relation]),
                "first_label": r.text("first_label") or cols["first"].replace("_", " "),
                "second_label": r.text("second_label") or cols["second"].replace("_", " "),
                "offset": page.offset,
                "limit": page.limit,
                "status": page.status,
                "column_1": _partners(first, cols, "second", page),
                "column_2": _partners(second, cols, "first", page),
            }
        )
    keyed = {r.relation for r in (*_roles(kb, "code_fact"), *_roles(kb, "code_link"), *_roles(kb, "code_edit"))}
    tables: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(store.tables):
        decl = program.decls.get(name)
        if name in keyed or decl is None or not decl.attrs or decl.attrs[0].type != "Code":
            continue
        if found := rows(name, decl.attrs[0].name):
            tables[name] = found
    known = bool(listed)
    partners = any(e["column_1"]["total"] or e["column_2"]["total"] for e in edits)
    if not known and not tables and not facts and not links and not partners:
        raise unknown_code(kb, code)
    category = next((str(row[r.col("category")]) for r in _roles(kb, "category") for row in derived(r)), None)
    return {
        "code": code,
        "known": known,
        "description": description,
        "category": category,
        "ranges": sorted(str(row[r.col("name")]) for r in _roles(kb, "range") for row in derived(r)),
        "facts": facts,
        "links": links,
        "edits": edits,
        "tables": tables,
    }


def _title(decl: A.RelDecl) -> str:
    return " ".join((decl.doc.get("title") or decl.name).split())


def _partners(found: list[dict[str, Any]], cols: dict[str, str], partner: str, page: Page) -> dict[str, Any]:
    """One direction of pair-edit partners, active rows first, then by partner code; one page of
    them. `cols` maps the role's keys (first, second, deleted, indicator, reason) to columns."""
    deleted = cols["deleted"]

    def gone(r: dict[str, Any]) -> bool:
        return bool(deleted) and r[deleted] != ""

    active = [r for r in found if not gone(r)]
    chosen = found if page.status == "all" else active if page.status == "active" else [r for r in found if gone(r)]
    chosen = sorted(chosen, key=lambda r: (gone(r), r[cols[partner]], r[deleted] if deleted else ""))
    items = [
        {
            "partner": r[cols[partner]],
            "column_1": r[cols["first"]],
            "column_2": r[cols["second"]],
            "effective_date": r.get("effective_date") or None,
            "modifier_indicator": r[cols["indicator"]] if cols["indicator"] else None,
            "deletion_date": (r[deleted] or None) if deleted else None,
            "active": not gone(r),
            "rationale": r[cols["reason"]] if cols["reason"] else "",
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
    """Codes the KB's code lists hold (for suggestions)."""
    store = kb.kb.store
    for role in _roles(kb, "code_list"):
        if store.has(role.relation):
            at = [a.name for a in kb.kb.program.decls[role.relation].attrs].index(role.col("code"))
            for _src, row in store.scan(role.relation):
                yield str(row[at])


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
    for edit in info["edits"]:
        if edit["column_1"]["total"] or edit["column_2"]["total"]:
            has_rows[edit["relation"]] = None
    for fact in info["facts"]:
        has_rows.setdefault(fact["relation"], []).append(tuple(fact["row"].values()))  # type: ignore[union-attr]
    for link in info["links"]:
        has_rows[link["relation"]] = None
    range_rels = {r.relation for r in _roles(kb, "range")}
    category_rels = {r.relation for r in _roles(kb, "category")}
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
                    if atom.pred in range_rels and any(("range", c) in groups for c in consts):
                        found.append(f"range {next(c for c in consts if ('range', c) in groups)}")
                    if atom.pred in category_rels and any(("category", c) in groups for c in consts):
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
