"""Adjudicate a claim: evaluate it, then turn the outcome relations into line decisions.

Evaluation returns data (deny/warn/overridden rows); this module attaches each rule's
annotations (denial codes, citations, message), and on request the proof and remedies.
Rendering is elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from engine.claims import Claim, claim_to_facts, fact_origin
from engine.compiler import CompiledProgram
from engine.evaluate import Evaluator, Model, Target
from engine.explain import because, encounter
from engine.explain import remedies as remedy_search
from engine.explain.proof import Prover, WhyNot
from engine.explain.rejudge import Rejudge
from engine.explain.result import ClaimResult, LineResult, Reason, assign_roles
from engine.explain.symmetry import Symmetry
from engine.ir import CompiledRule, IConst, Value
from engine.kb import LoadedKB
from engine.syntax import nodes as A


@dataclass
class _RuleInfo:
    rule: A.Rule
    compiled: list[CompiledRule]


class Adjudicator:
    """Decisions and explanations for claims against one loaded KB."""

    def __init__(self, kb: LoadedKB, evaluator: Evaluator, *, symmetry: bool = True):
        """`symmetry`: judge remedy candidates that differ only by values the program cannot
        tell apart once (engine/explain/symmetry.py); off, every candidate claim is judged."""
        assert kb.compiled is not None
        self.kb = kb
        self.cp = kb.compiled
        self.evaluator = evaluator
        self.rules: dict[str, _RuleInfo] = {}
        for crule in self.cp.rules:
            if crule.source_index is None or crule.aux:
                continue
            rule = kb.program.rules[crule.source_index]
            if rule.rule_id:
                self.rules.setdefault(rule.rule_id, _RuleInfo(rule, [])).compiled.append(crule)
        # the encounter key the rules respect (None: a remedy candidate is judged on the whole claim)
        self.locality = encounter.analyse(self.cp, kb.program)
        read = _denials_read(self.cp)  # the rows a remedy check reads
        self._for_denials = evaluator.needed(read)
        self.symmetry = Symmetry(self.cp, evaluator.store, read) if symmetry else None

    def evaluate(self, claim: Claim) -> Model:
        return self.evaluator.evaluate(claim_to_facts(claim))

    def prover(self, claim: Claim, model: Model) -> Prover:
        facts: dict[str, set[tuple]] = {}  # the claim's facts as sets, built on the first origin asked

        def origin(rel: str, row: tuple) -> str | None:
            if not facts:
                facts.update((name, set(rows)) for name, rows in claim_to_facts(claim).items())
            return fact_origin(claim, rel, row, facts)

        return Prover(self.kb.program, self.cp, self.evaluator, model, origin)

    def denials(self, claim: Claim) -> dict[int, set[str]]:
        """Line -> ids of the rules that deny it and are in force (a whole evaluation; the remedy
        search itself re-evaluates only what a candidate touches, see engine/explain/rejudge.py)."""
        return self._denials_of(self.evaluate(claim))

    @staticmethod
    def _denials_of(model: Model) -> dict[int, set[str]]:
        over = {(ln, rule) for ln, rule, _by in model.rows("overridden")}
        out: dict[int, set[str]] = {}
        for ln, rule in model.rows("deny"):
            if (ln, rule) not in over:
                out.setdefault(int(ln), set()).add(str(rule))
        return out

    def adjudicate(
        self, claim: Claim, *, proofs: bool = True, remedies: bool = False, model: Model | None = None
    ) -> ClaimResult:
        """`model`: the claim already evaluated by a batch backend (engine/backends)."""
        decision = model is None  # evaluated here: every relation of the claim, whole
        model = self.evaluate(claim) if model is None else model
        prover = self.prover(claim, model)
        overrides: dict[tuple[int, str], str] = {}
        for ln, rule, by in model.rows("overridden"):
            overrides.setdefault((int(ln), str(rule)), str(by))
        by_line: dict[int, list[Reason]] = {}
        for severity in ("deny", "warn"):
            for ln, rule_id in model.rows(severity):
                reason = self._reason(claim, prover, severity, int(ln), str(rule_id), proofs)
                reason.overridden_by = overrides.get((int(ln), str(rule_id)))
                by_line.setdefault(int(ln), []).append(reason)
        lines = []
        judges: list[Rejudge] = []  # the remedy search's candidate claims, judged once each

        def judge() -> Rejudge:  # made when a reason first has remedies to try
            if not judges:
                judges.append(self._rejudge(claim, model, decision))
            return judges[0]

        for line in sorted(claim.lines, key=lambda x: x.line):
            primary, reasons = assign_roles(by_line.get(line.line, []))
            if remedies and primary is not None:
                for r in reasons:
                    if r.severity == "deny" and r.in_force:
                        self._remedies(claim, line.line, r, judge)
            builder = because.BecauseBuilder(prover, guidance_anchor)
            for r in reasons:
                # table rows are cited from the proof; guidance statements from the rule alone
                r.citations = builder.citations(r.proof, r.guidance)
                if proofs:
                    r.because = builder.sentences(r.proof, r.remedies)
            lines.append(LineResult(line.line, line.code, "deny" if primary else "pay", reasons, primary))
        return ClaimResult(claim.id, self.kb.version, lines)

    def _reason(self, claim: Claim, prover: Prover, severity: str, ln: int, rule_id: str, proofs: bool) -> Reason:
        info = self.rules.get(rule_id)
        doc = info.rule.doc if info else A.Doc()
        bindings: dict[str, object] = {}
        proof = None
        if info is not None:
            head = (ln, rule_id)
            for crule in info.compiled:
                if isinstance(crule.head.args[1], IConst) and crule.head.args[1].value != rule_id:
                    continue
                solutions = prover.solutions(crule, head, limit=MESSAGE_SOLUTIONS)
                if solutions:
                    bindings = _merge(solutions)
                    proof = prover.prove_with(crule, head) if proofs else None
                    break
        message = _fill(doc.get("message") or doc.get("title") or rule_id, bindings)
        condition = doc.get("remedy_condition")
        return Reason(
            rule=rule_id,
            title=doc.get("title") or rule_id,
            kind=doc.get("kind") or "policy",
            severity=doc.get("severity") or severity,
            group=doc.get("group") or "",
            carc=doc.get("carc") or "",
            rarc=(doc.get("rarc") or "").split(),
            message=message,
            sources=[e.value for e in doc.entries if e.key == "source"],
            proof=proof,
            bindings=bindings,
            precedence=_precedence(doc.get("precedence")),
            guidance=" ".join(e.value for e in doc.entries if e.key == "guidance").split(),
            remedy_condition=" ".join(condition.split()) if condition else None,
        )

    def _rejudge(self, claim: Claim, model: Model, decision: bool) -> Rejudge:
        before = self._denials_of(model)
        whole = model if decision else None
        return Rejudge(
            self.evaluator, self.locality, self._for_denials, claim, before, self._denials_of, whole, self.symmetry
        )

    def _remedies(self, claim: Claim, ln: int, reason: Reason, judge: Callable[[], Rejudge]) -> None:
        reason.remedies = []  # searched: an empty list now means nothing the policy allows pays the line
        info = self.rules.get(reason.rule)
        if info is None:
            return
        specs = [e.value for e in info.rule.doc.entries if e.key == "remedy"]
        if not specs:
            return
        line = next(x for x in claim.lines if x.line == ln)
        partners = sorted(
            {
                v
                for k, v in reason.bindings.items()
                if isinstance(v, int) and v != ln and any(x.line == v for x in claim.lines) and k.startswith("l")
            }
        )
        judged = judge()
        found, blocked = remedy_search.find(
            claim, line, reason.rule, specs, reason.bindings, partners, judged.denials, judged.before, self._is_em
        )
        for m in found:
            if reason.remedy_condition:
                m["condition"] = reason.remedy_condition
        reason.remedies = found
        reason.blocked_options = blocked

    def _is_em(self, code: str) -> bool:
        """An evaluation-and-management code (the KB's "em" code range), for the remedy rule
        that never moves a line to a more intensive E/M level."""
        return bool(self.evaluator.lookup("in_range", (code, "em"))) if "in_range" in self.cp.kinds else False

    def why_not(self, claim: Claim, line: int, rule_id: str) -> WhyNot:
        model = self.evaluate(claim)
        return self.prover(claim, model).why_not(rule_id, {0: line})


def _denials_read(cp: CompiledProgram) -> tuple[Target, ...]:
    """What `Adjudicator._denials_of` reads: every `deny` row, and the `overridden` rows that
    name a rule some `deny` row can name (an override of a warning cancels no denial). When a
    `deny` rule's head names its rule by a variable, every `overridden` row."""
    every = tuple((rel, (None,) * cp.arity[rel]) for rel in ("deny", "overridden") if rel in cp.arity)
    if "overridden" not in cp.arity or "deny" not in cp.arity:
        return every
    ids: set[Value] = set()
    for rule in cp.rules_for("deny"):
        named = rule.head.args[1] if len(rule.head.args) > 1 else None
        if not isinstance(named, IConst):
            return every
        ids.add(named.value)
    rest = (None,) * (cp.arity["overridden"] - 2)
    return (every[0], *(("overridden", (None, rule_id, *rest)) for rule_id in sorted(ids, key=str)))


def guidance_anchor(statement_id: str) -> str:
    """Where the reference site shows a guidance statement (site/guidance.md, built to HTML)."""
    return f"guidance.html#{statement_id.lower()}"


def _precedence(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None  # the checker reports a non-integer @precedence


MESSAGE_SOLUTIONS = 12  # a message names at most this many findings (e.g. missing record elements)


def _merge(solutions: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """One binding per variable; where solutions differ (several missing elements, several
    partner lines) the distinct values are listed, so the message names all of them."""
    merged: dict[str, object] = {}
    for name in solutions[0]:
        values = list(dict.fromkeys(s[name] for s in solutions if name in s))
        merged[name] = values[0] if len(values) == 1 else _join([str(v) for v in values])
    return merged


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _fill(template: str, bindings: dict[str, object]) -> str:
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: str(bindings.get(m.group(1), m.group(0))), template)
