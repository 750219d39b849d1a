"""Plain-language readings of rule bodies: one sentence per condition, with its Datalog beside it.

A reading comes from a phrase template for the literal's relation (below) filled with the
literal's arguments; a relation with no template is read from its attribute names, so a new
relation is never left unread. Templates are split into segments by `|`: a segment after the
first is dropped when every argument it names is the anonymous `_`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from engine.syntax import nodes as A

# relation -> phrase template ({attribute} placeholders, `|` separates optional segments)
PHRASES: dict[str, str] = {
    # the claim
    "claim": "the claim is {claim_id}| for patient {patient}",
    "line": "claim line {line} bills code {code}| on {dos}| in POS {pos}| by rendering provider {npi}"
            "| for {units} unit(s)",
    "line_modifier": "line {line} carries modifier {modifier}",
    "line_diagnosis": "line {line} points to diagnosis {dx}",
    "line_credential": "the rendering provider of line {line} has credential {credential}",
    "line_drug": "line {line} identifies its drug| by NDC {ndc}| by name {name}| with dose {dose}",
    "line_documented": "the medical record for line {line} was reviewed",
    "line_doc": "the record for line {line} shows the element {element}| with value {value}",
    "history": "the patient's history holds claim {claim_id} line {line}| billing {code}| on {dos}"
               "| in POS {pos}| by rendering provider {npi}| for {units} unit(s)",
    "history_modifier": "history claim {claim_id} line {line} carries modifier {modifier}",
    "deny": "line {line} is denied by rule {rule}",
    "warn": "line {line} draws a warning from rule {rule}",
    "overridden": "the denial of line {line} by rule {rule} is set aside by rule {by_rule}",
    # tables and listed facts
    "ptp": "an NCCI PTP edit pairs column 1 code {column_1} with column 2 code {column_2}"
           "| effective {effective_date}| with deletion date {deletion_date}"
           "| with modifier indicator {modifier_indicator}| for the rationale {rationale}",
    "mue": "code {code} has a medically unlikely edit| of {mue_value} unit(s)"
           "| with adjudication indicator (MAI) {mai}| for the rationale {rationale}",
    "aoc_code": "{add_on_code} is an NCCI add-on code| of edit type {edit_type}",
    "aoc_primary": "{primary_code} is a listed primary code of add-on code {add_on_code}| (edit type {edit_type})",
    "cpt_code": "{code} is in the KB's CPT list| described as {description}| in category {category}",
    "code_deletion": "code {code} was deleted| with last valid date {deleted_date}| ({note})",
    "hcpcs": "{code} is a HCPCS Level II code| described as {short_description}",
    "pfs": "the fee schedule lists {code}| with modifier {modifier}| with status {status}"
           "| with facility NA flag {facility_na}| with non-facility NA flag {non_facility_na}"
           "| with PC/TC indicator {pctc}| with global days {global_days}",
    "pos": "place of service {pos}| is named {name}| has the fee-schedule setting {setting}"
           "| is described as {description}",
    "modifier": "{modifier} is a listed modifier| from {source}| in category {category}"
                "| titled {description}",
    "modifier_role": "modifier {modifier} plays the NCCI role {role}",
    "carc": "{code} is a claim adjustment reason code| described as {description}",
    "rarc": "{code} is a remittance advice remark code| described as {description}",
    "group_code": "{code} is a claim adjustment group code| described as {description}",
    "code_range": "the range {name} runs| from {low}| to {high}",
    # derived relations
    "known_code": "{code} is named by one of the KB's code lists",
    "in_range": "code {code} falls in the range {name}",
    "code_category": "code {code} is in category {category}",
    "assigned_pos": "{pos} is an assigned place-of-service code",
    "service": "service {line} from source {source}| bills {code}| on {dos}| by rendering provider {npi}"
               "| for {units} unit(s)",
    "service_modifier": "service {line} from source {source} carries modifier {modifier}",
    "partner": "{partner_code} (line {partner_line} from source {source}) is in the same encounter"
               " as claim line {line}",
    "ptp_started": "a PTP edit of {c1} over {c2} had started by {dos}| with deletion date {deletion_date}"
                   "| and modifier indicator {modifier_indicator}",
    "ptp_in_force": "a PTP edit of column 1 code {c1} over column 2 code {c2} is in force on {dos}"
                    "| with modifier indicator {modifier_indicator}",
    "ptp_bypassed": "a modifier lets line {line} be paid beside line {partner_line} from source {source}"
                    "| under modifier indicator {modifier_indicator}",
    "units_on_date": "{units} unit(s) of {code} are billed on {dos}| by rendering provider {npi}",
    "has_primary": "a primary code of line {line}'s add-on code is billed in the same encounter",
    "injection_line": "line {line} bills the injection service| on {dos}| in POS {pos}| by provider {npi}",
    "same_day_em": "E/M code {em_code} (line {em_line} from source {em_source}) is billed the same day"
                   " as injection line {line}",
    "facility_em_pos": "{pos} is a place of service where the guidance pays the E/M, not the injection",
    "injection_drug": "drug code {drug_code} on line {drug_line} is billed beside injection line {line}",
    "has_drug_line": "injection line {line} has a drug line beside it",
    "drug_identified": "drug line {line} states the drug's name and dose",
    "required_record_element": "{element} is an element every injection record must show",
    "long_acting_injectable": "{code} is a long-acting injectable drug",
    "physician_credential": "{credential} is a physician's credential",
    "intra_service_supervision": "{level} counts as intra-service supervision",
    "given_by_physician": "the record shows a physician gave the injection on line {line}",
    "supervised": "the record shows direct or personal supervision for line {line}",
    "marked_distinct": "line {line} carries a distinct-service or repeat modifier",
    "ptp_hit": "claim line {line} (code {c2}) is the column 2 code of a PTP edit in force with column 1 code {c1}"
               " on line {partner_line} from source {source}| under modifier indicator {modifier_indicator}",
    "bundled_apart_from_injection": "E/M line {line} is also bundled (PTP column 2, not bypassed) with a code"
                                    " other than the injection",
    "chemo_admin_billed": "a chemotherapy administration code is billed beside injection line {line}",
    "vaccine_admin_billed": "a vaccine administration code is billed beside injection line {line}",
    "medicare_vaccine_admin": "{code} is a HCPCS code Medicare uses to administer a vaccine",
    "record_element_label": "record element {element} is called {label}",
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_DATE_TYPES = ("Date", "OptDate")
_WORDS = {
    "date": {"<": "is before", "<=": "is on or before", ">": "is after", ">=": "is on or after"},
    "number": {"<": "is less than", "<=": "is at most", ">": "is more than", ">=": "is at least"},
    "symbol": {"<": "sorts before", "<=": "sorts at or before", ">": "sorts after", ">=": "sorts at or after"},
}
_AGG_WORDS = {"sum": "the sum of {t} over", "count": "the number of", "min": "the smallest {t} over",
              "max": "the largest {t} over", "mean": "the mean of {t} over"}


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
        for arg, attr in zip(lit.args, decl.attrs):
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
            t=_plain(lit.target) if lit.target is not None else "")
        return Reading(str(lit), f"{_plain(lit.result)} is {what} every case where {'; and '.join(inner)}")
    raise TypeError(lit)


def atom_phrase(atom: A.Atom, decls: dict[str, A.RelDecl], link: Linker) -> str:
    names = attr_names(decls, atom.pred, len(atom.args))
    values = {name: _term(arg, atom.pred, name, link) for name, arg in zip(names, atom.args)}
    template = PHRASES.get(atom.pred)
    if template is None or not set(_PLACEHOLDER.findall(template)) <= set(values):
        shown = [f"{name} {val}" for name, val in values.items() if val is not None]
        decl = decls.get(atom.pred)
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
