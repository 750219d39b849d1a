"""Judge remedy candidates: the denials of changed copies of one claim, evaluating again only
what a change can reach.

One `Rejudge` serves one adjudication. A candidate changes a line or two; by the encounter
analysis (engine/explain/encounter.py) only the encounters of the changed lines can decide
differently, so only their lines are evaluated, and every other line keeps its denials from
the decision already made. Of that evaluation, the relations and rules the change cannot reach
(e.g. the PTP pairs, when only a modifier changed) are taken from an evaluation of the same
lines before the change (a *base*, one per set of touched encounters), and only the rules
that read the outcomes are asked (`Evaluator.needed`).

What candidates share is computed once: the claim's facts, the bases, the relations and rules
a given change (the claim relations it touches and the rules' constants its rows hold, see
`Evaluator.change`) leaves unaffected, and the judgement of a candidate claim reached from
several lines or reasons, or differing from a judged one only by a value the program cannot
tell apart from it (engine/explain/symmetry.py). A candidate's facts are the base's with the
changed lines' rows swapped in (`Rejudge._patch`), and its evaluation leaves rows unsorted
(only its denials are read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.claims import Claim, ClaimFacts, claim_to_facts
from engine.evaluate import Change, Evaluator, Model, Needed, Row
from engine.explain.encounter import LINE, Locality
from engine.explain.symmetry import Symmetry
from engine.ir import Value

Denials = dict[int, set[str]]  # line -> ids of the rules that deny it and are in force
Encounters = frozenset[tuple[Value, ...]] | None  # None: the whole claim


Facts = dict[str, list[Row]]  # a candidate's claim facts: distinct rows, not necessarily sorted
Reuse = tuple[dict[str, list[Row]], dict[int, list[Row]]]  # known rows: per relation, per rule

_HOLE = object()  # where a changed claim's one new value stands in its shape (see Rejudge.denials)
_Shape = frozenset[tuple[str, int | None, frozenset[tuple[object, ...]]]]  # per relation (and line), rows with the hole


@dataclass
class _Base:
    """The touched encounters' lines before any change: their facts, their evaluation (the
    claim's own decision when `decided`, of which only rows of these lines count), and what
    candidates alike (the same `Evaluator.change`) reuse of it."""

    facts: ClaimFacts
    model: Model
    decided: bool
    lines: frozenset[int] = frozenset()
    reuse: dict[Change, Reuse] = field(default_factory=dict)
    # per relation, the decision's rows of the touched encounters (None: not told apart)
    within: dict[str, list[Row] | None] = field(default_factory=dict)
    # per rule asked on these facts alone (see `Rejudge._from_decision`), its rows: they are
    # the rule's rows for these facts whatever change asked for them
    asked: dict[int, list[Row]] = field(default_factory=dict)


class Rejudge:
    """Denials of changed copies of `claim`, whose own denials are `before`."""

    def __init__(
        self,
        evaluator: Evaluator,
        locality: Locality | None,
        needed: Needed | None,
        claim: Claim,
        before: Denials,
        denials_of: Callable[[Model], Denials],
        decision: Model | None = None,
        symmetry: Symmetry | None = None,
    ):
        """`decision`: the claim's own evaluation (every relation, whole), when there is one:
        the rows a candidate cannot change are then read from it instead of evaluating the
        touched encounters again before the change. `symmetry`: the program's interchangeable
        values, so that candidates that differ only by such a value are judged once (see
        `denials`); None judges each candidate claim."""
        self.evaluator = evaluator
        self.needed = needed
        self.claim = claim
        self.before = before
        self.denials_of = denials_of
        self.facts = claim_to_facts(claim)
        self._rows = {rel: set(rows) for rel, rows in self.facts.items()}
        # a claim carrying one of the rules' marks is judged whole (see Locality.marks)
        self.locality = locality if locality is not None and not locality.marked(self.facts) else None
        self.decision = decision
        self._memo: dict[object, Denials] = {}  # by `_key`
        self._bases: dict[Encounters, _Base] = {}
        self.symmetry = symmetry
        self.judged = 0  # candidate claims judged (not answered from a memo)
        self._values: set[Value] | None = None  # every value of the claim's facts
        self._shapes: dict[_Shape, list[tuple[Value, Denials]]] = {}
        # per line number, its rows of each line relation (for `_patch`); None: lines not told
        # apart by their numbers, or no encounter key, and every candidate takes `_facts`
        self._by_line: dict[int, dict[str, list[Row]]] | None = None
        self._encounter: dict[int, tuple[Value, ...]] = {}  # each line's, before any change
        self._all_lines = frozenset(int(r[0]) for r in self.facts.get(LINE, ()))
        if self.locality is not None and len(self._all_lines) == len(claim.lines):
            by_line: dict[int, dict[str, list[Row]]] = {ln.line: {} for ln in claim.lines}
            for rel in self.locality.line_relations:
                for row in self.facts.get(rel, ()):
                    by_line[int(row[0])].setdefault(rel, []).append(row)
            self._by_line = by_line
            self._encounter = {n: self.locality.encounter(rows[LINE][0]) for n, rows in by_line.items()}
        self._base_facts: dict[Encounters, ClaimFacts] = {}  # see `_original`
        self._last_in_place: tuple[Claim, dict[int, dict[str, list[Row]]] | None] | None = None

    def denials(self, changed: Claim) -> Denials:
        """The denials of `changed`, a copy of the claim with some lines changed. Each changed
        claim is judged once, though several lines and reasons try the same change (both lines
        of a mutual PTP pair try the same modifiers), and so is a changed claim that differs from
        one judged already only by a value the program cannot tell apart from the one there
        (engine/explain/symmetry.py: adding XS to a line is decided as adding XU is)."""
        key = self._key(changed)
        found = self._memo.get(key)
        if found is None:
            shape = self._shape(changed) if self.symmetry is not None else None
            if shape is not None:
                found = self._alike(*shape)
            if found is None:
                found = self._judge(changed)
                self.judged += 1
                if shape is not None:
                    self._shapes.setdefault(shape[0], []).append((shape[1], found))
            self._memo[key] = found
        return found

    def _key(self, changed: Claim) -> object:
        """`changed` as a memo key: for a change of lines in place (the claim's own id, patient and
        history, the same number of lines), the changed lines by position, which tell the
        changed claim apart as well as the whole claim does and hash far cheaper; else the claim."""
        claim = self.claim
        if (
            changed.patient is claim.patient
            and changed.history is claim.history
            and changed.id == claim.id
            and len(changed.lines) == len(claim.lines)
        ):
            pairs = enumerate(zip(claim.lines, changed.lines, strict=True))
            return tuple([(i, ln) for i, (was, ln) in pairs if ln is not was])
        return changed

    def _shape(self, changed: Claim) -> tuple[_Shape, Value] | None:
        """The rows of the changed claim's facts that differ from the claim's own (for a change of
        lines in place, by changed line: no other row can differ), with its one new value (a value
        the claim's own facts hold nowhere) left as a hole, and that value; None unless there is
        exactly one. The claim's own rows hold neither value of a swap."""
        own = self.facts
        if self._values is None:
            self._values = {v for rows in own.values() for row in rows for v in row}
        known = self._values
        lines = self._in_place(changed)
        parts: list[tuple[str, int | None, list[Row]]]  # relation, line (None: all), its rows
        if lines is not None and self._by_line is not None:  # only the changed lines' rows can differ
            by_line = self._by_line
            parts = [
                (rel, n, rows.get(rel, []))
                for n, rows in lines.items()
                for rel in by_line[n].keys() | rows.keys()
                if set(by_line[n].get(rel, ())) != set(rows.get(rel, ()))
            ]
        else:
            facts = claim_to_facts(changed)
            parts = [(rel, None, facts.get(rel, [])) for rel in set(facts) | set(own) if facts.get(rel) != own.get(rel)]
        new = {v for _rel, _n, rows in parts for row in rows for v in row if v not in known}
        if len(new) != 1:
            return None
        (value,) = new
        if not isinstance(value, str):
            return None
        holed = frozenset(
            (rel, n, frozenset(tuple(_HOLE if x == value else x for x in row) for row in rows))
            for rel, n, rows in parts
        )
        return holed, value

    def _alike(self, shape: _Shape, value: Value) -> Denials | None:
        """The denials of a judged claim of the same shape whose value is interchangeable with
        `value` where the hole is: swapping the two maps one claim's facts onto the other's (neither
        value is anywhere else in either; the rows not in the shape are the claim's own), so their
        decisions agree."""
        assert self.symmetry is not None
        seeds = frozenset((rel, i) for rel, _n, rows in shape for row in rows for i, x in enumerate(row) if x is _HOLE)
        for other, found in self._shapes.get(shape, ()):
            if self.symmetry.interchangeable(value, other, seeds):
                return found
        return None

    def _judge(self, changed: Claim) -> Denials:
        patched = self._patch(changed)
        touched, facts, inside = patched if patched is not None else self._facts(changed)
        base = self._bases.get(touched)
        if base is None:
            base_facts = self._original(touched)
            if self.decision is not None:
                lines = frozenset(int(r[0]) for r in base_facts.get(LINE, ()))
                base = _Base(base_facts, self.decision, True, lines)
            else:
                base = self._evaluated(base_facts)
            self._bases[touched] = base
        change = self.evaluator.change(base.facts, facts)  # candidates alike reach the same rules
        reuse = base.reuse.get(change)
        if reuse is None:
            keep = self.evaluator.unaffected(base.facts, facts)
            rules = self.evaluator.unaffected_rules(base.facts, facts)
            reuse = self._from_decision(base, touched, keep, rules) if base.decided else None
            if reuse is None and base.decided:  # rows the decision cannot tell apart: evaluate
                base = self._bases[touched] = self._evaluated(base.facts)
            if reuse is None:
                reuse = (
                    {rel: base.model.rows(rel) for rel in keep},
                    {i: rows for i, rows in base.model.by_rule.items() if i in rules},
                )
            base.reuse[change] = reuse
        known, known_rules = reuse
        found = self.denials_of(
            self.evaluator.evaluate(facts, known=known, known_rules=known_rules, only=self.needed, ordered=False)
        )
        if inside is None:
            return found
        out = {n: rules for n, rules in self.before.items() if n not in inside}
        out.update(found)
        return out

    def _original(self, touched: Encounters) -> ClaimFacts:
        """The facts of the claim's lines in the touched encounters (all of it for None)."""
        if touched is None:
            return self.facts
        found = self._base_facts.get(touched)
        if found is None:
            original = _restrict(self.claim, self.facts, touched, self.locality)  # type: ignore[arg-type]
            found = self._base_facts[touched] = claim_to_facts(original)
        return found

    def _facts(self, changed: Claim) -> tuple[Encounters, Facts, set[int] | None]:
        """The encounters a change touches (None: the whole claim), the facts of the changed
        claim's lines in them, and those lines' numbers (None: every line)."""
        facts = claim_to_facts(changed)
        touched = self._touched(changed, facts)
        if touched is None:
            return None, facts, None
        inside = _lines(facts, touched, self.locality)  # type: ignore[arg-type]
        target = dataclasses.replace(changed, lines=tuple(ln for ln in changed.lines if ln.line in inside))
        return touched, claim_to_facts(target), inside

    def _in_place(self, changed: Claim) -> dict[int, dict[str, list[Row]]] | None:
        """For a change of some lines in place (the same line numbers in the same places, the
        rest of the claim as it was), each changed line's rows of every line relation, made
        from that line alone; None when the change is not of that kind (or lines are not told
        apart by number). The last answer is kept: `denials` asks it for a candidate's shape,
        then `_judge` for its facts."""
        last = self._last_in_place
        if last is not None and last[0] is changed:
            return last[1]
        found = self._lines_in_place(changed)
        self._last_in_place = (changed, found)
        return found

    def _lines_in_place(self, changed: Claim) -> dict[int, dict[str, list[Row]]] | None:
        loc, claim = self.locality, self.claim
        if self._by_line is None or loc is None or len(changed.lines) != len(claim.lines):
            return None
        if not (
            changed.id == claim.id
            and (changed.patient is claim.patient or changed.patient == claim.patient)
            and (changed.history is claim.history or changed.history == claim.history)
        ):
            return None  # not Locality.same_claim
        new: dict[int, dict[str, list[Row]]] = {}  # changed line -> its rows of each line relation
        for before, after in zip(claim.lines, changed.lines, strict=True):
            if after is before:
                continue
            if after.line != before.line:
                return None
            if after != before:
                alone = claim_to_facts(Claim(changed.id, changed.patient, (after,), ()))  # its rows alone
                new[after.line] = {rel: alone[rel] for rel in loc.line_relations if alone.get(rel)}
        return new

    def _patch(self, changed: Claim) -> tuple[Encounters, Facts, set[int]] | None:
        """`_facts` for a change of some lines in place (the same line numbers in the same
        places, the rest of the claim as it was), from the facts already made: the changed
        lines' rows alone are made again, and the touched encounters' rows are the base's
        with those lines' rows swapped. None when the change is not of that kind."""
        by_line, loc = self._by_line, self.locality
        new = self._in_place(changed)
        if new is None or by_line is None or loc is None:
            return None
        if any(loc.marked(rows) for rows in new.values()):  # the claim's own rows had none (see __init__)
            return None
        touched: set[tuple[Value, ...]] = set()
        differ: set[str] = set()  # the line relations some changed line's rows differ in
        where = dict(self._encounter)  # each line's encounter after the change
        for n, rows in new.items():
            old = by_line[n]
            here = {rel for rel in old.keys() | rows.keys() if set(old.get(rel, ())) != set(rows.get(rel, ()))}
            where[n] = now = loc.encounter(rows[LINE][0])
            if here:
                differ |= here
                touched.add(loc.encounter(old[LINE][0]))
                touched.add(now)
        inside = {n for n, e in where.items() if e in touched}
        encounters = frozenset(touched)
        base_facts = self._original(encounters)
        swapped = sorted(new.keys() & inside)
        facts = dict(base_facts)  # a relation no changed line's rows differ in keeps the base's list
        for rel in differ:  # (a changed line outside the touched encounters differs in none)
            kept = [r for r in base_facts.get(rel, ()) if r[0] not in new]
            for n in swapped:
                kept += new[n].get(rel, ())
            facts[rel] = kept  # distinct, though not in claim_to_facts' order
        return encounters, facts, inside

    def _evaluated(self, facts: ClaimFacts) -> _Base:
        """A base evaluated on its own, rule by rule (for known rows per rule)."""
        return _Base(facts, self.evaluator.evaluate(facts, by_rule=True, only=self.needed), False)

    def _from_decision(
        self, base: _Base, touched: Encounters, keep: frozenset[str], rules: frozenset[int]
    ) -> Reuse | None:
        """The known rows of a candidate, read from the claim's decision: of each relation the
        change cannot reach, the rows of the touched encounters (`Locality.within`); of each
        rule it cannot reach in a relation it does reach, the rows only that rule's head can
        make (its constants differ from those of every rule the change reaches). None when
        some rows cannot be told apart so."""
        cp, decision = self.evaluator.cp, base.model
        needed = self.needed.relations if self.needed is not None else None
        rows_of = base.within

        def rows(rel: str) -> list[Row] | None:
            if rel not in rows_of:
                whole = decision.rows(rel)
                loc = self.locality
                if touched is None or loc is None or base.lines == self._all_lines:
                    rows_of[rel] = whole  # the touched encounters are the whole claim
                else:
                    rows_of[rel] = loc.within(rel, whole, base.lines, touched)
            return rows_of[rel]

        known: dict[str, list[Row]] = {}
        for rel in keep:
            if needed is not None and rel not in needed:
                continue
            found = rows(rel)
            if found is None:
                return None
            known[rel] = found
        known_rules: dict[int, list[Row]] = {}
        told, ask = self.evaluator.apart(keep, rules, needed)
        groups: dict[tuple[str, tuple[int, ...]], dict[tuple[Value, ...], list[Row]]] = {}
        for index, rel, positions, values in told:
            by = groups.get((rel, positions))
            if by is None:  # the relation's rows by their values at these positions
                found = rows(rel)
                if found is None:
                    return None
                by = groups[(rel, positions)] = {}
                for row in found:
                    by.setdefault(tuple(row[i] for i in positions), []).append(row)
            known_rules[index] = by.get(values, [])
        missing = [i for i in ask if i not in base.asked]
        if missing:
            # such a rule reads only relations the change cannot reach (known) and claim facts
            only = Needed(frozenset(missing), frozenset(known) | {cp.rules[i].head.relation for i in missing})
            model = self.evaluator.evaluate(base.facts, known=known, by_rule=True, only=only, ordered=False)
            base.asked.update((i, model.by_rule.get(i, [])) for i in missing)
        known_rules.update((i, base.asked[i]) for i in ask)
        return known, known_rules

    def _touched(self, changed: Claim, facts: ClaimFacts) -> Encounters:
        """The encounters the change touches; None when it must be judged on the whole claim."""
        loc = self.locality
        if loc is None or not loc.same_claim(self.claim, changed):
            return None
        # the claim's own rows were checked for marks when the search began; a change's new ones now
        new = {rel: [r for r in rows if r not in self._rows.get(rel, frozenset())] for rel, rows in facts.items()}
        if loc.marked(new):
            return None
        touched = loc.touched_facts(self.facts, facts)
        return None if touched is None else frozenset(touched)


def _lines(facts: ClaimFacts, encounters: frozenset[tuple[Value, ...]], loc: Locality) -> set[int]:
    return {int(r[0]) for r in facts.get(LINE, ()) if loc.encounter(r) in encounters}


def _restrict(claim: Claim, facts: ClaimFacts, encounters: frozenset[tuple[Value, ...]], loc: Locality) -> Claim:
    """The claim with only the lines of these encounters (history and patient kept)."""
    keep = _lines(facts, encounters, loc)
    return dataclasses.replace(claim, lines=tuple(ln for ln in claim.lines if ln.line in keep))
