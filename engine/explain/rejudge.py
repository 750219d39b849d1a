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
a given set of changed claim relations leaves unaffected, and the judgement of a candidate
claim reached from several lines or reasons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.claims import Claim, ClaimFacts, claim_to_facts
from engine.evaluate import Evaluator, Model, Needed, Row
from engine.explain.encounter import LINE, Locality

Denials = dict[int, set[str]]  # line -> ids of the rules that deny it and are in force
Encounters = frozenset[tuple[object, ...]] | None  # None: the whole claim


@dataclass
class _Base:
    """The touched encounters' lines evaluated before any change, and what candidates that
    change the same claim relations reuse of it."""

    facts: ClaimFacts
    model: Model
    reuse: dict[frozenset[str], tuple[dict[str, list[Row]], dict[int, list[Row]]]] = field(default_factory=dict)


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
    ):
        self.evaluator = evaluator
        self.needed = needed
        self.claim = claim
        self.before = before
        self.denials_of = denials_of
        self.facts = claim_to_facts(claim)
        self._rows = {rel: set(rows) for rel, rows in self.facts.items()}
        # a claim carrying one of the rules' marks is judged whole (see Locality.marks)
        self.locality = locality if locality is not None and not locality.marked(self.facts) else None
        self._memo: dict[Claim, Denials] = {}
        self._bases: dict[Encounters, _Base] = {}

    def denials(self, changed: Claim) -> Denials:
        """The denials of `changed`, a copy of the claim with some lines changed. Each changed
        claim is judged once, though several lines and reasons try the same change (both lines
        of a mutual PTP pair try the same modifiers)."""
        found = self._memo.get(changed)
        if found is None:
            found = self._memo[changed] = self._judge(changed)
        return found

    def _judge(self, changed: Claim) -> Denials:
        facts = claim_to_facts(changed)
        touched = self._touched(changed, facts)
        if touched is None:
            original, target, inside = self.claim, changed, None
        else:
            original = _restrict(self.claim, self.facts, touched, self.locality)  # type: ignore[arg-type]
            inside = _lines(facts, touched, self.locality)  # type: ignore[arg-type]
            target = dataclasses.replace(changed, lines=tuple(ln for ln in changed.lines if ln.line in inside))
            facts = claim_to_facts(target)
        base = self._bases.get(touched)
        if base is None:
            base_facts = self.facts if touched is None else claim_to_facts(original)
            model = self.evaluator.evaluate(base_facts, by_rule=True, only=self.needed)
            base = self._bases[touched] = _Base(base_facts, model)
        changed_rels = frozenset(
            rel for rel in set(base.facts) | set(facts) if base.facts.get(rel, []) != facts.get(rel, [])
        )
        reuse = base.reuse.get(changed_rels)
        if reuse is None:
            keep = self.evaluator.unaffected(base.facts, facts)
            rules = self.evaluator.unaffected_rules(base.facts, facts)
            reuse = base.reuse[changed_rels] = (
                {rel: base.model.rows(rel) for rel in keep},
                {i: rows for i, rows in base.model.by_rule.items() if i in rules},
            )
        known, known_rules = reuse
        found = self.denials_of(self.evaluator.evaluate(facts, known=known, known_rules=known_rules, only=self.needed))
        if inside is None:
            return found
        out = {n: rules for n, rules in self.before.items() if n not in inside}
        out.update(found)
        return out

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


def _lines(facts: ClaimFacts, encounters: frozenset[tuple[object, ...]], loc: Locality) -> set[int]:
    return {int(r[0]) for r in facts.get(LINE, ()) if loc.encounter(r) in encounters}


def _restrict(claim: Claim, facts: ClaimFacts, encounters: frozenset[tuple[object, ...]], loc: Locality) -> Claim:
    """The claim with only the lines of these encounters (history and patient kept)."""
    keep = _lines(facts, encounters, loc)
    return dataclasses.replace(claim, lines=tuple(ln for ln in claim.lines if ln.line in keep))
