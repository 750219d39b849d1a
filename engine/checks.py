"""The checker: small named passes over a Program, each returning diagnostics.

Order matters only for noise: later passes skip what earlier ones already reported (a rule
with an undeclared relation is not also type-checked). The table pass (CSV headers and rows)
lives in engine.store, which reads the files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from engine import analysis, docroles
from engine.analysis import all_atoms
from engine.diagnostics import Diagnostic, Severity
from engine.program import OUTCOME_RELATIONS, Program, TypeInfo
from engine.syntax import nodes as A

if TYPE_CHECKING:
    import networkx as nx

Pass = Callable[[Program], list[Diagnostic]]

REQUIRED_OUTCOME_KEYS = ("id", "title", "summary", "source", "kind", "severity", "group", "carc")
KNOWN_RULE_KEYS = set(REQUIRED_OUTCOME_KEYS) | {
    "rarc",
    "message",
    "remedy",
    "remedy_condition",
    "precedence",
    "guidance",
    "example",
    "note",
}
# a relation declaration's doc comment: what the explanations, the checker and the site read
KNOWN_DECL_KEYS = {"summary", "source", "title", "release", "reading", "because", "docs"}
RULE_KINDS = (
    "ncci_ptp",
    "ncci_mue",
    "ncci_aoc",
    "code_validity",
    "place_of_service",
    "policy",
    "documentation",
    "duplicate",
    "fee_schedule",
)
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _rule_atoms(rule: A.Rule) -> Iterable[tuple[A.Atom, bool]]:
    yield rule.head, False
    yield from all_atoms(rule.body)


# --- declarations ------------------------------------------------------------------------


def check_declarations(prog: Program) -> list[Diagnostic]:
    out = list(prog.declaration_diagnostics)
    for decl in prog.decls.values():
        for attr in decl.attrs:
            if attr.type not in prog.types:
                out.append(
                    Diagnostic("unknown-type", f"unknown type {attr.type} for {decl.name}.{attr.name}", attr.loc)
                )
        names = [a.name for a in decl.attrs]
        for n in {n for n in names if names.count(n) > 1}:
            out.append(Diagnostic("duplicate-attribute", f"attribute {n} appears twice in {decl.name}", decl.loc))
    for name, inp in prog.inputs.items():
        if name not in prog.decls:
            out.append(Diagnostic("undeclared-relation", f".input for undeclared relation {name}", inp.loc))
        if not isinstance(inp.option("filename"), str):
            out.append(Diagnostic("input-option", f'.input {name} needs filename="..."', inp.loc))
        for key, _ in inp.options:
            if key not in ("filename", "delimiter", "key", "IO", "headers", "header"):
                out.append(Diagnostic("input-option", f"unknown .input option {key}", inp.loc, Severity.WARNING))
    for name, cd in prog.claim_relations.items():
        if name not in prog.decls:
            out.append(Diagnostic("undeclared-relation", f".claim for undeclared relation {name}", cd.loc))
        if name in prog.inputs:
            out.append(Diagnostic("input-conflict", f"relation {name} is both .claim and .input", cd.loc))
    for f in prog.facts:
        rel = f.atom.pred
        if rel in prog.claim_relations:
            out.append(
                Diagnostic("claim-fact", f"{rel} is filled from the claim; the KB cannot state facts for it", f.loc)
            )
        elif rel in prog.inputs:
            out.append(
                Diagnostic(
                    "input-fact", f"{rel} is loaded from a table; add rows there, not facts", f.loc, Severity.WARNING
                )
            )
    return out


def check_undeclared(prog: Program) -> list[Diagnostic]:
    out = []
    for f in prog.facts:
        if f.atom.pred not in prog.decls:
            out.append(_undeclared(prog, f.atom))
    for r in prog.rules:
        for atom, _neg in _rule_atoms(r):
            if atom.pred not in prog.decls:
                out.append(_undeclared(prog, atom))
    return out


def _undeclared(prog: Program, atom: A.Atom) -> Diagnostic:
    notes: tuple[str, ...] = ()
    close = _closest(atom.pred, prog.decls)
    if close:
        notes = (f"did you mean {close}?",)
    return Diagnostic(
        "undeclared-relation",
        f"relation {atom.pred} is not declared (add `.decl {atom.pred}(...)`)",
        atom.loc,
        notes=notes,
    )


def _closest(name: str, options: Iterable[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
    return m[0] if m else None


def check_arity(prog: Program) -> list[Diagnostic]:
    out = []
    atoms: list[A.Atom] = [f.atom for f in prog.facts]
    for r in prog.rules:
        atoms.extend(a for a, _ in _rule_atoms(r))
    for atom in atoms:
        decl = prog.decls.get(atom.pred)
        if decl is not None and decl.arity != len(atom.args):
            out.append(
                Diagnostic(
                    "arity-mismatch",
                    f"{atom.pred} has {decl.arity} attribute(s) "
                    f"({', '.join(a.name for a in decl.attrs)}) but is used with {len(atom.args)}",
                    atom.loc,
                )
            )
    return out


# --- types -------------------------------------------------------------------------------


def check_types(prog: Program) -> list[Diagnostic]:
    out = []
    for f in prog.facts:
        types = prog.attr_types(f.atom.pred)
        if types is None or len(types) != len(f.atom.args):
            continue
        for arg, t in zip(f.atom.args, types, strict=True):
            if not isinstance(arg, A.Const):
                out.append(Diagnostic("non-ground-fact", f"a fact must contain only constants; {arg} is not", arg.loc))
                continue
            problem = t.problem(arg.value)
            if problem:
                out.append(Diagnostic("type-mismatch", problem, arg.loc))
    for r in prog.rules:
        out.extend(_rule_types(prog, r))
    return out


def _rule_types(prog: Program, rule: A.Rule) -> list[Diagnostic]:
    """Infer each variable's type from the atoms it appears in; report conflicts and
    constants that cannot be of their position's type."""
    out: list[Diagnostic] = []
    seen: dict[str, tuple[TypeInfo, A.Atom]] = {}
    for atom, _neg in _rule_atoms(rule):
        types = prog.attr_types(atom.pred)
        if types is None or len(types) != len(atom.args):
            continue
        for arg, t in zip(atom.args, types, strict=True):
            if isinstance(arg, A.Const):
                problem = t.problem(arg.value)
                if problem:
                    out.append(Diagnostic("type-mismatch", f"in {atom.pred}: {problem}", arg.loc))
            elif isinstance(arg, A.Var) and not arg.anonymous:
                prev = seen.get(arg.name)
                if prev is None:
                    seen[arg.name] = (t, atom)
                elif prev[0].base != t.base:
                    out.append(
                        Diagnostic(
                            "type-mismatch",
                            f"variable {arg.name} is a {prev[0].base} in {prev[1].pred} but a {t.base} in {atom.pred}",
                            arg.loc,
                        )
                    )
            elif isinstance(arg, A.BinOp) and t.base != "number":
                out.append(
                    Diagnostic("type-mismatch", f"arithmetic result used where {atom.pred} expects {t.name}", arg.loc)
                )
    bases = {name: t.base for name, (t, _) in seen.items()}
    for lit in _flat(rule.body):
        if isinstance(lit, A.Comparison):
            lb, rb = _term_base(lit.left, bases), _term_base(lit.right, bases)
            if lb and rb and lb != rb:
                out.append(Diagnostic("type-mismatch", f"comparison {lit} mixes a {lb} and a {rb}", lit.loc))
        for term in _terms(lit):
            if isinstance(term, A.BinOp):
                for v in A.term_vars(term):
                    if bases.get(v.name) == "symbol":
                        out.append(Diagnostic("type-mismatch", f"arithmetic on {v.name}, which is a symbol", v.loc))
    return out


def _flat(lits: Iterable[A.Literal]) -> Iterable[A.Literal]:
    for lit in lits:
        yield lit
        if isinstance(lit, A.Aggregate):
            yield from _flat(lit.body)


def _terms(lit: A.Literal) -> list[A.Term]:
    if isinstance(lit, A.Comparison):
        return [lit.left, lit.right]
    if isinstance(lit, A.Atom):
        return list(lit.args)
    if isinstance(lit, A.Negation):
        return list(lit.atom.args)
    return []


def _term_base(term: A.Term, bases: dict[str, str]) -> str | None:
    if isinstance(term, A.Const):
        return "number" if isinstance(term.value, int) else "symbol"
    if isinstance(term, A.Var):
        return bases.get(term.name)
    return "number"


# --- safety ------------------------------------------------------------------------------


def check_safety(prog: Program) -> list[Diagnostic]:
    out = []
    for r in prog.rules:
        out.extend(rule_safety(r))
    return out


def bound_by(body: Iterable[A.Literal], initially: set[str] | None = None) -> set[str]:
    """Variables a body binds: positive atom arguments that are plain variables, aggregate
    results, and `v = expr` once expr is bound (repeated to a fixpoint)."""
    body = list(body)
    bound = set(initially or ())
    for lit in body:
        if isinstance(lit, A.Atom):
            bound |= {a.name for a in lit.args if isinstance(a, A.Var)}
    changed = True
    while changed:
        changed = False
        for lit in body:
            if isinstance(lit, A.Aggregate) and isinstance(lit.result, A.Var) and lit.result.name not in bound:
                bound.add(lit.result.name)
                changed = True
            if isinstance(lit, A.Comparison) and lit.op == "=":
                for a, b in ((lit.left, lit.right), (lit.right, lit.left)):
                    if isinstance(a, A.Var) and a.name not in bound and all(v.name in bound for v in A.term_vars(b)):
                        bound.add(a.name)
                        changed = True
    return bound


def rule_safety(rule: A.Rule) -> list[Diagnostic]:
    out = []
    for arg in rule.head.args:
        for v in A.term_vars(arg):
            if v.anonymous:
                out.append(
                    Diagnostic("underscore-in-head", "`_` cannot appear in a rule head: name the variable", v.loc)
                )
    bound = bound_by(rule.body)
    reported: set[str] = set()
    for v in (v for a in rule.head.args for v in A.term_vars(a) if not v.anonymous):
        if v.name not in bound and v.name not in reported:
            reported.add(v.name)
            out.append(
                Diagnostic("unbound-variable", f"head variable {v.name} is not bound by a positive body atom", v.loc)
            )
    out.extend(_body_safety(rule.body, bound, reported))
    return out


def _body_safety(body: Iterable[A.Literal], bound: set[str], reported: set[str]) -> list[Diagnostic]:
    out = []
    for lit in body:
        if isinstance(lit, A.Negation):
            for v in A.literal_vars(lit):
                if not v.anonymous and v.name not in bound and v.name not in reported:
                    reported.add(v.name)
                    out.append(
                        Diagnostic(
                            "unsafe-negation",
                            f"variable {v.name} appears only in a negated atom; bind it in a positive atom or write _",
                            v.loc,
                        )
                    )
        elif isinstance(lit, (A.Comparison, A.Match)):
            for v in A.literal_vars(lit):
                if v.anonymous:
                    out.append(Diagnostic("unsafe-comparison", "`_` cannot be compared", v.loc))
                elif v.name not in bound and v.name not in reported:
                    reported.add(v.name)
                    out.append(
                        Diagnostic(
                            "unbound-variable",
                            f"variable {v.name} is used in {lit} but never bound by a positive atom",
                            v.loc,
                        )
                    )
        elif isinstance(lit, A.Atom):
            for arg in lit.args:
                if isinstance(arg, A.BinOp):
                    for v in A.term_vars(arg):
                        if v.name not in bound and v.name not in reported:
                            reported.add(v.name)
                            out.append(
                                Diagnostic(
                                    "unbound-variable",
                                    f"variable {v.name} is used in the expression {arg} but never bound "
                                    "by a positive atom",
                                    v.loc,
                                )
                            )
        elif isinstance(lit, A.Aggregate):
            inner_bound = bound_by(lit.body, bound)
            if lit.target is not None:
                for v in A.term_vars(lit.target):
                    if v.name not in inner_bound and v.name not in reported:
                        reported.add(v.name)
                        out.append(
                            Diagnostic(
                                "unbound-variable",
                                f"aggregate target {v.name} is not bound inside the aggregate",
                                v.loc,
                            )
                        )
            out.extend(_body_safety(lit.body, inner_bound, reported))
    return out


# --- stratification ----------------------------------------------------------------------


def check_stratification(prog: Program) -> list[Diagnostic]:
    g = analysis.program_graph(prog)
    out = []
    for scc, u, v, data in analysis.negative_cycles(g):
        cycle = _cycle_through(g, u, v)
        out.append(
            Diagnostic(
                "cyclic-negation",
                f"cannot stratify: {', '.join(sorted(scc))} depend on themselves through "
                f"negation or aggregation ({' -> '.join(cycle)})",
                data["loc"],
            )
        )
    return out


def _cycle_through(g: nx.MultiDiGraph, u: str, v: str) -> list[str]:
    import networkx as nx  # here, not at import time (see engine.analysis)

    if v == u:
        return [u, f"!{u}"]
    return [u, f"!{v}", *nx.shortest_path(g, v, u)[1:]]


# --- rule annotations --------------------------------------------------------------------


def check_annotations(prog: Program) -> list[Diagnostic]:
    out = []
    for dup_id, positions in analysis.RuleIndex.of_program(prog).by_id.items():
        first = prog.rules[positions[0]]
        for i in positions[1:]:
            ann = prog.rules[i].doc.entry("id")
            assert ann is not None
            out.append(Diagnostic("duplicate-rule-id", f"rule id {dup_id} is already used at {first.loc}", ann.loc))
    for r in prog.rules:
        rid = r.doc.get("id")
        ann = r.doc.entry("id")
        if rid is not None and ann is not None and not ID_RE.match(rid):
            out.append(Diagnostic("bad-annotation", f"rule id {rid!r} must use letters, digits, . _ -", ann.loc))
        for e in r.doc.entries:
            if e.key not in KNOWN_RULE_KEYS:
                out.append(Diagnostic("bad-annotation", f"unknown annotation @{e.key}", e.loc, Severity.WARNING))
        if r.head.pred in OUTCOME_RELATIONS:
            out.extend(_outcome_annotations(r))
    for decl in prog.decls.values():
        for e in decl.doc.entries:
            if e.key not in KNOWN_DECL_KEYS:
                out.append(
                    Diagnostic(
                        "bad-annotation", f"unknown annotation @{e.key} on .decl {decl.name}", e.loc, Severity.WARNING
                    )
                )
        reading = decl.doc.entry("reading")
        if reading is not None:
            names = {a.name for a in decl.attrs}
            unknown = sorted(set(re.findall(r"\{(\w+)\}", reading.value)) - names)
            if unknown:
                out.append(
                    Diagnostic(
                        "bad-annotation",
                        f"@reading of {decl.name} names "
                        f"{', '.join('{' + u + '}' for u in unknown)}, not attributes of the relation",
                        reading.loc,
                        notes=(f"its attributes: {', '.join(a.name for a in decl.attrs)}",),
                    )
                )
    out.extend(docroles.check_roles(prog.decls))
    return out


def _outcome_annotations(r: A.Rule) -> list[Diagnostic]:
    out = []
    missing = [k for k in REQUIRED_OUTCOME_KEYS if not r.doc.get(k)]
    if missing:
        out.append(
            Diagnostic(
                "missing-annotation",
                f"{r.head.pred} rule lacks {', '.join('@' + k for k in missing)}",
                r.loc,
                notes=("outcome rules need these to explain a decision; see docs/language.md",),
            )
        )
    rid = r.doc.get("id")
    if len(r.head.args) == 2:
        tag = r.head.args[1]
        if not (isinstance(tag, A.Const) and tag.value == rid):
            out.append(
                Diagnostic("outcome-id", f'the second argument of {r.head.pred} must be the rule id "{rid}"', tag.loc)
            )
    sev = r.doc.get("severity")
    if sev and sev not in OUTCOME_RELATIONS:
        e = r.doc.entry("severity")
        out.append(Diagnostic("bad-annotation", f"@severity must be deny or warn, not {sev!r}", e.loc if e else r.loc))
    elif sev and sev != r.head.pred:
        e = r.doc.entry("severity")
        out.append(
            Diagnostic(
                "bad-annotation",
                f"@severity {sev} does not match the head relation {r.head.pred}",
                e.loc if e else r.loc,
            )
        )
    kind = r.doc.get("kind")
    if kind and kind not in RULE_KINDS:
        e = r.doc.entry("kind")
        out.append(
            Diagnostic("bad-annotation", f"@kind {kind!r} is not one of {', '.join(RULE_KINDS)}", e.loc if e else r.loc)
        )
    msg = r.doc.get("message")
    if msg:
        names = {v.name for v in A.literal_vars(r.head)} | {v.name for lit in r.body for v in A.literal_vars(lit)}
        for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", msg):
            if m.group(1) not in names:
                e = r.doc.entry("message")
                out.append(
                    Diagnostic(
                        "bad-annotation",
                        f"@message uses {{{m.group(1)}}}, which is not a variable of the rule",
                        e.loc if e else r.loc,
                    )
                )
    return out


def check_denial_codes(prog: Program, lookup: Callable[[str, str], bool]) -> list[Diagnostic]:
    """Group, CARC and RARC on outcome rules must exist in the KB's own code lists.
    `lookup(relation, code)` answers whether the code is in the named relation."""
    out = []
    for r in prog.outcome_rules():
        for key, rel in (("group", "group_code"), ("carc", "carc")):
            val = r.doc.get(key)
            e = r.doc.entry(key)
            if val and rel in prog.decls and not lookup(rel, val):
                out.append(Diagnostic("unknown-code", f"@{key} {val} is not in the {rel} table", e.loc if e else r.loc))
        rarcs = (r.doc.get("rarc") or "").split()
        e = r.doc.entry("rarc")
        for code in rarcs:
            if "rarc" in prog.decls and not lookup("rarc", code):
                out.append(Diagnostic("unknown-code", f"@rarc {code} is not in the rarc table", e.loc if e else r.loc))
    return out


PASSES: list[tuple[str, Pass]] = [
    # name, pass (in order: syntax problems come from the parser before these)
    ("declarations", check_declarations),
    ("undeclared", check_undeclared),
    ("arity", check_arity),
    ("types", check_types),
    ("safety", check_safety),
    ("stratification", check_stratification),
    ("annotations", check_annotations),
]


def run_passes(prog: Program) -> list[Diagnostic]:
    """Every pass in order; a rule already in error is not re-reported by later passes."""
    out = list(prog.syntax_diagnostics)
    for _name, fn in PASSES:
        out.extend(fn(prog))
    return _dedupe(out)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple] = set()
    result = []
    for d in sorted(diags, key=Diagnostic.sort_key):
        key = (d.code, d.location, d.message)
        if key not in seen:
            seen.add(key)
            result.append(d)
    return result
