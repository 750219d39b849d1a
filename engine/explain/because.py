"""`because`: a reason's proof retold as a few plain sentences a coder can act on.

Built generically from the proof tree (engine/explain/proof.py) and the KB's declarations:
each relation's `@summary` says what a fact of it means, its declared attribute names label
the values, and a stored table's `@title` and `@release` (doc annotations on its `.decl`) name
the table in citations. Nothing here is written per rule, and no sentence shows a relation
name, a rule variable or Datalog syntax: values are labelled by what they are ("place of
service 22", "modifier indicator 1"), table rows by table, release and row number.

The sentences, in order: the claim lines and record entries the reason rests on; the table
rows and KB lists it used (citations); what is missing (a negated condition: the fact that
is not there, with what the claim shows instead, e.g. the credential that did not qualify);
totals and the decisive comparisons (units over a limit, a date after a deletion date).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.explain.proof import ProofNode, Prover
from engine.ir import IAtom, IConst, IVar, RelKind, Value
from engine.program import Program

MAX_SENTENCES = 14
MAX_VALUE_CHARS = 60
MAX_MEMO = 1 << 14  # rows whose `pairs` a vocabulary keeps (emptied when full)

# How an attribute name reads in a sentence, where its plain spelling is not enough.
_LABELS = {
    "dos": "date of service",
    "pos": "place of service",
    "npi": "rendering NPI",
    "dx": "diagnosis",
    "ndc": "NDC",
    "mai": "MUE adjudication indicator",
    "mue_value": "MUE limit",
    "c1": "column 1 code",
    "c2": "column 2 code",
    "column_1": "column 1",
    "column_2": "column 2",
    "claim_id": "claim",
    "pctc": "PC/TC indicator",
    "facility_na": "facility NA indicator",
    "non_facility_na": "non-facility NA indicator",
}
_OPS = {
    "<": "is before or below",
    "<=": "is on or before, or at most,",
    ">": "is after or above",
    ">=": "is on or after, or at least,",
}
_NUMERIC_OPS = {"<": "is less than", "<=": "is at most", ">": "is more than", ">=": "is at least"}
_DATE_OPS = {"<": "is before", "<=": "is on or before", ">": "is after", ">=": "is on or after"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_IDENT = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")


def label(attr: str) -> str:
    return _LABELS.get(attr, attr.replace("_", " "))


def show(v: Value | None) -> str:
    """A value as a coder reads it: identifiers with underscores as words, long text cut."""
    if v is None:
        return "any"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if v == "":
        return "none"
    text = v.replace("_", " ") if _IDENT.match(v) else v
    return " ".join(text.split())


def subject(summary: str) -> str:
    """What one fact of a relation is, from the first sentence of its @summary: "a service
    line", "the places of service where ..."; parenthesised asides and variable names dropped."""
    text = re.sub(r"\s*\([^)]*\)", "", " ".join(summary.split()))
    first = re.split(r"(?<=[.;])\s", text, maxsplit=1)[0].rstrip(".;")
    first = first.split(":")[0].strip()
    if not first:
        return ""
    word = first.split()[0]
    return first if len(word) > 1 and word.isupper() else first[0].lower() + first[1:]


@dataclass
class _Facts:
    """The leaves of one proof, in first-seen order, without repeats."""

    claim: list[tuple[str, tuple]] = field(default_factory=list)
    tables: list[tuple[str, tuple, dict[str, object]]] = field(default_factory=list)
    kb: list[tuple[str, tuple]] = field(default_factory=list)
    absent: list[tuple[str, tuple]] = field(default_factory=list)
    comparisons: list[str] = field(default_factory=list)
    totals: list[str] = field(default_factory=list)

    def collect(self, node: ProofNode, vocab: _Vocabulary) -> None:
        row = node.row
        if node.kind == "claim" and node.relation and row is not None:
            _add(self.claim, (node.relation, row))
        elif node.kind == "table" and node.relation and row is not None:
            item = (node.relation, row, dict(node.source or {}))
            if all((r, w) != (item[0], item[1]) for r, w, _ in self.tables):
                self.tables.append(item)
        elif node.kind == "kb_fact" and node.relation and row is not None:
            _add(self.kb, (node.relation, row))
        elif node.kind == "absent" and node.relation and row is not None:
            _add(self.absent, (node.relation, row))
        elif node.kind == "comparison" and node.note:
            text = vocab.comparison(node.fact, node.note)
            if text:
                _add(self.comparisons, text)
        elif node.kind == "aggregate" and node.note:
            m = re.search(r"= (-?\d+)$", node.fact)
            n = re.search(r"over (\d+)", node.note)
            if m and n:
                count = int(n.group(1))
                services = "one service" if count == 1 else f"{count} services"
                _add(self.totals, f"Summed over {services} on the same date: {m.group(1)} in all.")
        for child in node.children:
            self.collect(child, vocab)


def _add(items: list, item: object) -> None:
    if item not in items:
        items.append(item)


class _Vocabulary:
    """Sentences about facts of the KB's relations, from their declarations (what each
    declaration says is read once: see `vocabulary`)."""

    def __init__(self, program: Program):
        self.program = program
        self._attrs: dict[str, list[str]] = {}
        self._docs: dict[tuple[str, str], str] = {}
        self._what: dict[str, str] = {}
        # `pairs` by (relation, row, skip): the same claim lines, table rows and KB facts are told
        # in the reasons of one claim and of the next (see `pairs`)
        self._pairs: dict[tuple[str, tuple, int], str] = {}

    def attrs(self, rel: str) -> list[str]:
        found = self._attrs.get(rel)
        if found is None:
            decl = self.program.decls.get(rel)
            found = self._attrs[rel] = [a.name for a in decl.attrs] if decl else []
        return found

    def doc(self, rel: str, key: str) -> str:
        found = self._docs.get((rel, key))
        if found is None:
            decl = self.program.decls.get(rel)
            found = self._docs[(rel, key)] = " ".join((decl.doc.get(key) or "").split()) if decl else ""
        return found

    def what(self, rel: str) -> str:
        found = self._what.get(rel)
        if found is None:
            found = self._what[rel] = subject(self.doc(rel, "summary")) or "a fact"
        return found

    def omitted(self, rel: str) -> bool:
        """`@because omit` on a declaration: its facts are plumbing (e.g. which rules rest on a
        table), left to the full proof."""
        return self.doc(rel, "because").split()[:1] == ["omit"]

    def hidden(self, rel: str) -> set[str]:
        """`@because hide ATTR ...`: attributes a coder does not read (e.g. a regular expression)."""
        words = self.doc(rel, "because").split()
        return set(words[1:]) if words[:1] == ["hide"] else set()

    def pairs(self, rel: str, row: tuple, skip: int = 0) -> str:
        # a row of str, int and None only is its own key: no two such rows are equal unless their
        # values are of the same types (True == 1 would be; a bool reads "yes", not "1")
        plain = all(v is None or v.__class__ is str or v.__class__ is int for v in row)
        key = (rel, row, skip)
        if plain:
            found = self._pairs.get(key)
            if found is not None:
                return found
        text = self._pairs_of(rel, row, skip)
        if plain:
            if len(self._pairs) >= MAX_MEMO:
                self._pairs.clear()
            self._pairs[key] = text
        return text

    def _pairs_of(self, rel: str, row: tuple, skip: int) -> str:
        names = self.attrs(rel) or [f"value {i + 1}" for i in range(len(row))]
        hidden = self.hidden(rel)
        # long free text (a POS description, an edit's rationale) is left to the proof
        return ", ".join(
            (f"no {label(n)}" if v == "" else f"{label(n)} {show(v)}")
            for n, v in list(zip(names, row, strict=False))[skip:]
            if v is not None and len(show(v)) <= MAX_VALUE_CHARS and n not in hidden
        )

    def line_keyed(self, rel: str) -> bool:
        names = self.attrs(rel)
        return bool(names) and names[0] == "line"

    def claim_fact(self, rel: str, row: tuple) -> str:
        if self.line_keyed(rel) and row and row[0] is not None:
            rest = self.pairs(rel, row, skip=1)
            if not rest:
                return f"Line {row[0]}: {self.what(rel)}."
            # the claim's own line relation needs no gloss; others say what the values are
            return (
                f"Line {row[0]}: {rest}." if rel == self.attrs(rel)[0] else f"Line {row[0]} ({self.what(rel)}): {rest}."
            )
        return f"{_capital(self.what(rel))}: {self.pairs(rel, row)}."

    def table_row(self, rel: str, row: tuple, source: dict[str, object]) -> str:
        return f"{self.table_name(rel, source)}: {self.pairs(rel, row)}."

    def table_name(self, rel: str, source: dict[str, object]) -> str:
        title = self.doc(rel, "title") or _capital(self.what(rel))
        release = self.doc(rel, "release")
        parts = [title] + ([release] if release else [])
        if "row" in source:
            parts.append(f"row {source['row']}")
        return ", ".join(parts)

    def kb_fact(self, rel: str, row: tuple) -> str:
        return f"Listed in the KB as {self.what(rel)}: {self.pairs(rel, row)}."

    def comparison(self, fact: str, note: str) -> str | None:
        """An ordering test between two values ("1000 > 999"), in words; equality tests and
        tests against an empty value say nothing a coder needs."""
        m = re.match(r'^("(?:[^"\\]|\\.)*"|-?\d+) (<=|>=|<|>) ("(?:[^"\\]|\\.)*"|-?\d+)$', fact)
        if not m:
            return None
        left, op, right = m.group(1), m.group(2), m.group(3)
        lv, rv = left.strip('"'), right.strip('"')
        if not lv or not rv:
            return None
        if _DATE.match(lv) and _DATE.match(rv):
            return f"Checked: {lv} {_DATE_OPS[op]} {rv}."
        if left.lstrip("-").isdigit() and right.lstrip("-").isdigit():
            return f"Checked: {lv} {_NUMERIC_OPS[op]} {rv}."
        return None


_VOCABULARIES: dict[int, tuple[Program, _Vocabulary]] = {}


def vocabulary(program: Program) -> _Vocabulary:
    """The vocabulary of `program`, kept for the next claim against the same KB (a few KBs at
    most live in one process)."""
    found = _VOCABULARIES.get(id(program))
    if found is None or found[0] is not program:
        if len(_VOCABULARIES) >= 8:
            _VOCABULARIES.clear()
        found = _VOCABULARIES[id(program)] = (program, _Vocabulary(program))
    return found[1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


class BecauseBuilder:
    """Sentences and citations for reasons proved over one evaluation."""

    def __init__(self, prover: Prover, guidance_link: Callable[[str], str] | None = None):
        self.prover = prover
        self.vocab = vocabulary(prover.program)
        self.guidance_link = guidance_link
        self._facts: dict[int, tuple[ProofNode, _Facts]] = {}  # id(proof) -> its leaves

    def facts(self, proof: ProofNode) -> _Facts:
        """The leaves of `proof` (collected once for its citations and its sentences)."""
        found = self._facts.get(id(proof))
        if found is None or found[0] is not proof:
            facts = _Facts()
            facts.collect(proof, self.vocab)
            found = self._facts[id(proof)] = (proof, facts)
        return found[1]

    def sentences(self, proof: ProofNode | None, remedies: list[dict[str, object]] | None = None) -> list[str]:
        if proof is None:
            return []
        facts = self.facts(proof)
        out: list[str] = []
        for rel, row in facts.claim:
            _add(out, self.vocab.claim_fact(rel, row))
        for rel, row, src in facts.tables:
            _add(out, self.vocab.table_row(rel, row, src))
        for rel, row in facts.kb:
            if not self.vocab.omitted(rel):
                _add(out, self.vocab.kb_fact(rel, row))
        for rel, row in facts.absent:
            for s in self.absent(rel, row):
                _add(out, s)
        for s in facts.totals + facts.comparisons:
            _add(out, s)
        for s in self.missing(remedies):
            _add(out, s)
        return out[:MAX_SENTENCES]

    def absent(self, rel: str, row: tuple) -> list[str]:
        """A negated condition: what is not there, then what the claim shows instead (the
        claim facts the missing fact's rules would have read, with the values bound)."""
        bound = self.vocab.pairs(rel, row)
        head = f"Not shown{self._for_line(rel, row)}: {self.vocab.what(rel)}"
        out = [f"{head} ({bound})." if bound and not self.vocab.line_keyed(rel) else f"{head}."]
        if self.prover.cp.kinds.get(rel) in (RelKind.CLAIM, RelKind.FACTS):
            return out
        for rel2, row2, found in self._claim_reads(rel, row):
            if found:
                out += [self.vocab.claim_fact(rel2, r) for r in found]
            elif self.vocab.line_keyed(rel2) and row2 and row2[0] is not None:
                rest = self.vocab.pairs(rel2, row2, skip=1)
                out.append(
                    f"Line {row2[0]} has no {_strip_article(self.vocab.what(rel2))}" + (f" ({rest})." if rest else ".")
                )
        return out

    def _for_line(self, rel: str, row: tuple) -> str:
        if self.vocab.line_keyed(rel) and row and isinstance(row[0], int):
            rest = self.vocab.pairs(rel, row, skip=1)
            return f" for line {row[0]}" + (f" ({rest})" if rest else "")
        return ""

    def _claim_reads(self, rel: str, row: tuple) -> list[tuple[str, tuple, list[tuple]]]:
        """For each rule of `rel`, the first claim relation its body reads with a value the
        head binds, and the claim rows that match (possibly none)."""
        out: list[tuple[str, tuple, list[tuple]]] = []
        cp = self.prover.cp
        for crule in cp.rules_for(rel):
            binding = {
                t.name: v for t, v in zip(crule.head.args, row, strict=False) if v is not None and isinstance(t, IVar)
            }
            for lit in crule.body:
                if not isinstance(lit, IAtom) or lit.negated or cp.kinds.get(lit.relation) is not RelKind.CLAIM:
                    continue
                args = tuple(
                    binding.get(t.name) if isinstance(t, IVar) else t.value if isinstance(t, IConst) else None
                    for t in lit.args
                )
                if all(a is None for a in args):
                    continue
                found = [r for r, _src in self.prover.candidates(lit.relation, args)]
                item = (lit.relation, args, sorted(found, key=repr))
                if item not in out:
                    out.append(item)
                break
        return out

    def missing(self, remedies: list[dict[str, object]] | None) -> list[str]:
        """What the claim lacks, from the remedies the search found (a modifier, fewer units)."""
        by_line: dict[object, list[str]] = {}
        for m in remedies or []:
            action = m.get("action")
            if isinstance(action, dict) and "add_modifier" in action:
                by_line.setdefault(action["line"], []).append(str(action["add_modifier"]))
        out = []
        for ln, mods in by_line.items():
            if len(mods) == 1:
                out.append(f"Line {ln} does not carry modifier {mods[0]}, which would let the line be paid.")
            else:
                out.append(
                    f"Line {ln} carries none of the modifiers {', '.join(mods[:-1])} or {mods[-1]};"
                    " any one of them would let the line be paid."
                )
        return out

    def citations(self, proof: ProofNode | None, guidance: list[str]) -> list[dict[str, object]]:
        """The table rows the proof used (table, release, row, values) and the guidance
        statements the rule encodes, each with its page anchor on the reference site."""
        out: list[dict[str, object]] = []
        if proof is not None:
            for rel, row, src in self.facts(proof).tables:
                names = self.vocab.attrs(rel)
                cite: dict[str, object] = {
                    "kind": "table",
                    "table": self.vocab.doc(rel, "title") or _capital(self.vocab.what(rel)),
                    "release": self.vocab.doc(rel, "release") or None,
                    "file": src.get("file"),
                    "row": src.get("row"),
                    "values": dict(zip(names, row, strict=False)),
                    "text": self.vocab.table_row(rel, row, src),
                }
                out.append(cite)
        for gid in guidance:
            out.append(
                {
                    "kind": "guidance",
                    "id": gid,
                    "link": self.guidance_link(gid) if self.guidance_link else None,
                    "text": self.guidance_text(gid),
                }
            )
        return out

    def guidance_text(self, gid: str) -> str:
        rows = (
            [r for _src, r in self.prover.evaluator.lookup("guidance_statement", (gid, None, None))]
            if self.prover.cp.kinds.get("guidance_statement") is RelKind.STORED
            else []
        )
        if rows:
            return f"{gid} ({show(rows[0][1])}): {rows[0][2]}"
        return gid


def _strip_article(text: str) -> str:
    return re.sub(r"^(a|an|the)\s+", "", text)
