"""Plain-language readings of rule bodies: one sentence per condition, with its Datalog beside it.

A reading comes from the `@reading` annotation of the literal's relation declaration (a phrase
with `{attribute}` placeholders) filled with the literal's arguments; a relation without one is
read from its `@summary` and attribute names, so a new relation is never left unread. A phrase is
split into segments by `|`: a segment after the first is dropped when every argument it names is
the anonymous `_`. No relation of a particular KB is named here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from engine.syntax import nodes as A

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_DATE_TYPES = ("Date", "OptDate")
_WORDS = {
    "date": {"<": "is before", "<=": "is on or before", ">": "is after", ">=": "is on or after"},
    "number": {"<": "is less than", "<=": "is at most", ">": "is more than", ">=": "is at least"},
    "symbol": {"<": "sorts before", "<=": "sorts at or before", ">": "sorts after", ">=": "sorts at or after"},
}
_AGG_WORDS = {
    "sum": "the sum of {t} over",
    "count": "the number of",
    "min": "the smallest {t} over",
    "max": "the largest {t} over",
    "mean": "the mean of {t} over",
}


@dataclass(frozen=True)
class Linker:
    """How a reading links: relation names to their pages, constants to what they name.

    `relation(name)` gives Markdown for a relation name; `constant(relation, attribute, value)`
    gives Markdown for a constant in that argument position."""

    relation: Callable[[str], str]
    constant: Callable[[str, str, A.Value], str]


@dataclass(frozen=True)
class Reading:
    """One body condition: its Datalog text and its reading (Markdown)."""

    datalog: str
    text: str
    negated: bool = False


def attr_names(decls: dict[str, A.RelDecl], rel: str, arity: int) -> list[str]:
    decl = decls.get(rel)
    if decl is not None and decl.arity == arity:
        return [a.name for a in decl.attrs]
    return [f"argument {i + 1}" for i in range(arity)]


def var_types(rule: A.Rule, decls: dict[str, A.RelDecl]) -> dict[str, str]:
    """Each variable's declared type, from the positive atoms that bind it (first one wins)."""
    out: dict[str, str] = {}
    for lit in _positive_atoms(rule.body):
        decl = decls.get(lit.pred)
        if decl is None or decl.arity != len(lit.args):
            continue
        for arg, attr in zip(lit.args, decl.attrs, strict=False):
            if isinstance(arg, A.Var) and not arg.anonymous:
                out.setdefault(arg.name, attr.type)
    return out


def _positive_atoms(body: tuple[A.Literal, ...]):
    for lit in body:
        if isinstance(lit, A.Atom):
            yield lit
        elif isinstance(lit, A.Aggregate):
            yield from _positive_atoms(lit.body)


def read_rule(rule: A.Rule, decls: dict[str, A.RelDecl], link: Linker) -> tuple[str, list[Reading]]:
    """The rule's head as a sentence, and one reading per body condition, in order."""
    types = var_types(rule, decls)
    return read_head(rule, decls, link), [read_literal(lit, decls, types, link) for lit in rule.body]


def read_head(rule: A.Rule, decls: dict[str, A.RelDecl], link: Linker) -> str:
    head = rule.head
    if head.pred in ("deny", "warn") and rule.rule_id:
        verb = "is **denied**" if head.pred == "deny" else "draws a **warning**"
        return f"Line {_term(head.args[0], head.pred, 'line', link)} {verb} by this rule when all of these hold:"
    return f"{link.relation(head.pred)}: {atom_phrase(head, decls, link)}, when all of these hold:"


def read_literal(lit: A.Literal, decls: dict[str, A.RelDecl], types: dict[str, str], link: Linker) -> Reading:
    if isinstance(lit, A.Atom):
        return Reading(str(lit), f"{atom_phrase(lit, decls, link)} ({link.relation(lit.pred)})")
    if isinstance(lit, A.Negation):
        text = f"it is **not** the case that {atom_phrase(lit.atom, decls, link)} ({link.relation(lit.atom.pred)})"
        return Reading(str(lit), text, negated=True)
    if isinstance(lit, A.Comparison):
        return Reading(str(lit), comparison_phrase(lit, types))
    if isinstance(lit, A.Match):
        verb = "does **not** match" if lit.negated else "matches"
        return Reading(str(lit), f"{_plain(lit.value)} {verb} the pattern {_plain(lit.pattern)}", negated=lit.negated)
    if isinstance(lit, A.Aggregate):
        inner = [read_literal(b, decls, types, link).text for b in lit.body]
        what = _AGG_WORDS.get(lit.func, lit.func + " of {t} over").format(
            t=_plain(lit.target) if lit.target is not None else ""
        )
        return Reading(str(lit), f"{_plain(lit.result)} is {what} every case where {'; and '.join(inner)}")
    raise TypeError(lit)


def atom_phrase(atom: A.Atom, decls: dict[str, A.RelDecl], link: Linker) -> str:
    names = attr_names(decls, atom.pred, len(atom.args))
    values = {name: _term(arg, atom.pred, name, link) for name, arg in zip(names, atom.args, strict=False)}
    decl = decls.get(atom.pred)
    template = reading_template(decl)
    if template is None or not set(_PLACEHOLDER.findall(template)) <= set(values):
        shown = [f"{name} {val}" for name, val in values.items() if val is not None]
        summary = _first_sentence(" ".join((decl.doc.get("summary") or "").split())) if decl else ""
        if summary:  # the declaration's own words, with the arguments this literal gives
            return summary + (" (with " + ", ".join(shown) + ")" if shown else "")
        return f"a {atom.pred} fact holds" + (" with " + ", ".join(shown) if shown else "")
    out = []
    for i, segment in enumerate(template.split("|")):
        keys = _PLACEHOLDER.findall(segment)
        if i > 0 and keys and all(values[k] is None for k in keys):
            continue
        out.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)] or "*any*", segment))
    return "".join(out)


def reading_template(decl: A.RelDecl | None) -> str | None:
    """The declaration's `@reading` phrase, whitespace folded; None when it has none."""
    text = " ".join((decl.doc.get("reading") or "").split()) if decl is not None else ""
    return re.sub(r"\s*\|", "|", text) or None


def comparison_phrase(lit: A.Comparison, types: dict[str, str]) -> str:
    left, right = _plain(lit.left), _plain(lit.right)
    if lit.op in ("=", "!=") and isinstance(lit.right, A.Const) and lit.right.value == "":
        return f"{left} is {'empty' if lit.op == '=' else 'not empty'}"
    if lit.op == "=":
        return f"{left} is {right}"
    if lit.op == "!=":
        return f"{left} differs from {right}"
    kind = _kind(lit.left, types) or _kind(lit.right, types) or "symbol"
    return f"{left} {_WORDS[kind][lit.op]} {right}"


def _kind(term: A.Term, types: dict[str, str]) -> str | None:
    if isinstance(term, A.Var):
        t = types.get(term.name)
        if t is None:
            return None
        return "date" if t in _DATE_TYPES else ("number" if t == "number" else "symbol")
    if isinstance(term, A.Const):
        return "number" if isinstance(term.value, int) else None
    return "number"


def _term(term: A.Term, rel: str, attr: str, link: Linker) -> str | None:
    """An argument as Markdown; None for the anonymous variable."""
    if isinstance(term, A.Var):
        return None if term.anonymous else f"`{term.name}`"
    if isinstance(term, A.Const):
        return link.constant(rel, attr, term.value)
    return f"`{term}`"


def _first_sentence(text: str) -> str:
    """Lower-cased to continue a sentence (unless it starts with an acronym), no final stop."""
    mt = re.match(r"(.+?)[.](\s|$)", text)
    text = mt.group(1) if mt else text.rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _plain(term: A.Term) -> str:
    return f"`{term}`"
