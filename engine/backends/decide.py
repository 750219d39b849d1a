"""Scrub's decisions over a batch backend's models, straight to result dicts.

`PolicyKB.adjudicate_many(..., engine="duckdb")` builds a Reason, LineResult and ClaimResult per
claim through the Adjudicator (the path `explain` shares) and then turns them into dicts. Without
proofs or remedies most of that work is per KB, not per claim: a rule's title, kind, codes,
sources, guidance citations and precedence are the same on every line it fires on. This module
computes those once per (rule, severity) with the Adjudicator's own code and per claim only
fills the message from the backend's solutions, sets roles and overrides, and picks the primary
reason, exactly as Adjudicator.adjudicate and explain.result.assign_roles do. The result equals
`ClaimResult.to_dict()` of the Adjudicator path (tests/test_batch_decide.py checks it).

A message shows only the variables it names, so the backend is asked for just those, merged
(a MessageRequest): no solution of a rule whose message names none is fetched, and no binding
dict is built per solution.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.adjudicate import MESSAGE_SOLUTIONS, _join, guidance_anchor
from engine.backends import BatchModel, MessageRequest
from engine.batch import PlainJson
from engine.claims import Claim, claim_to_facts
from engine.evaluate import Model
from engine.explain.because import BecauseBuilder
from engine.explain.proof import Prover
from engine.ir import IConst

if TYPE_CHECKING:
    from engine.api import PolicyKB

_Key = tuple[bool, int, str]  # explain.result.precedence_key
_DENIAL, _WARNING, _OVERRIDDEN = 0, 1, 2  # a reason's group on its line, in reading order
_ROLES = {_WARNING: "warning", _OVERRIDDEN: "overridden"}
_place = operator.itemgetter(0)
_line_number = operator.attrgetter("line")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")  # as adjudicate._fill reads a message


def _names(message: str) -> tuple[str, ...]:
    """The variables a message names, each once, in order."""
    return tuple(dict.fromkeys(_PLACEHOLDER.findall(message)))


class _RuleTemplate:
    """What every reason of one rule id with one severity shares, and how to fill its message."""

    __slots__ = ("base", "denies", "format", "key", "message", "pieces", "rule_indices", "slots", "templated")

    def __init__(self, base: dict[str, Any], message: str, rule_indices: tuple[int, ...]):
        self.base = base
        self.key: _Key = (base.get("precedence") is None, base.get("precedence") or 0, base["rule"])
        self.message = message
        names = _names(message)
        self.templated = bool(names)
        # the message as literal text and placeholder names, alternating, split where _fill matches
        self.pieces: list[str] = _PLACEHOLDER.split(message)
        # each placeholder piece with its name's place in the backend's values (names, in order)
        self.slots = tuple((i, names.index(self.pieces[i])) for i in range(1, len(self.pieces), 2))
        # the same as a str.format template over the values: literal braces doubled
        self.format = "".join(
            f"{{{names.index(p)}}}" if i % 2 else p.replace("{", "{{").replace("}", "}}")
            for i, p in enumerate(self.pieces)
        )
        self.rule_indices = rule_indices
        self.denies = base["severity"] == "deny"

    def fill(self, values: tuple[str | None, ...]) -> str:
        """adjudicate._fill with the merged bindings: a name the rule does not bind stays as
        written, `{name}`."""
        if None not in values:
            return self.format.format(*values)
        out = self.pieces[:]
        for i, k in self.slots:
            v = values[k]
            if v is not None:
                out[i] = v
            else:
                out[i] = "{" + out[i] + "}"
        return "".join(out)


class BatchDecider:
    """Result dicts for claims evaluated by a batch backend (no proofs, no remedies)."""

    def __init__(self, kb: PolicyKB):
        self.kb = kb
        self.adjudicator = kb._batch_adjudicator
        self.version = kb.kb.version
        self._templates: dict[tuple[str, str], _RuleTemplate] = {}
        from engine.api import _SolvedProver

        base = Prover(kb.kb.program, kb.adjudicator.cp, kb.evaluator, Model(), lambda _rel, _row: None)
        prover = self._prover = _SolvedProver(base, {})  # no solutions: the template's bindings are empty
        self._builder = BecauseBuilder(prover, guidance_anchor)
        names: dict[int, tuple[str, ...]] = {}
        for rule_id in self.adjudicator.rules:
            message, indices = self._message_of(rule_id)
            wanted = _names(message)
            if wanted:  # a message without placeholders needs no solutions at all
                names.update((i, wanted) for i in indices)
        self.request = MessageRequest(names, MESSAGE_SOLUTIONS, _join)

    def _message_of(self, rule_id: str) -> tuple[str, tuple[int, ...]]:
        """The rule's message template and its compiled rules, in the order Adjudicator._reason
        tries them (skipping a rule whose head names another rule id)."""
        info = self.adjudicator.rules.get(rule_id)
        if info is None:
            return rule_id, ()
        doc = info.rule.doc
        indices = tuple(
            c.index
            for c in info.compiled
            if not (isinstance(c.head.args[1], IConst) and c.head.args[1].value != rule_id)
        )
        return doc.get("message") or doc.get("title") or rule_id, indices

    def _template(self, rule_id: str, severity: str) -> _RuleTemplate:
        """The reason the Adjudicator builds for this rule with no bindings, as a dict without
        its message and role, plus the message template and the compiled rules to fill it from."""
        found = self._templates.get((rule_id, severity))
        if found is not None:
            return found
        adj = self.adjudicator
        reason = adj._reason(Claim("", None, (), ()), self._prover, severity, 0, rule_id, False)  # type: ignore[arg-type]
        reason.citations = self._builder.citations(None, reason.guidance)
        base = reason.to_dict()
        del base["message"], base["role"]
        message, indices = self._message_of(rule_id)
        found = self._templates[(rule_id, severity)] = _RuleTemplate(base, message, indices)
        return found

    def _message(self, t: _RuleTemplate, model: Model, ln: int, rule_id: str) -> str:
        """The message of the model's evaluate_many(..., messages=self.request)."""
        if not t.templated:
            return t.message
        solved = model.messages if isinstance(model, BatchModel) else {}
        head = (ln, rule_id)
        for index in t.rule_indices:  # Adjudicator._reason: the first compiled rule with solutions
            values = solved.get((index, head))
            if values is not None:
                return t.fill(values)
        return t.message  # _fill without bindings leaves every placeholder as written

    def decide(self, claim: Claim, model: Model) -> dict[str, Any]:
        """What `Adjudicator.adjudicate(claim, proofs=False, model=model).to_dict()` returns."""
        overrides: dict[tuple[int, str], str] = {}
        for ln, rule, by in model.rows("overridden"):
            overrides.setdefault((int(ln), str(rule)), str(by))
        # line -> its reasons, each with where explain.result.assign_roles puts it: in-force
        # denials, then in-force warnings, then overridden findings, each group by precedence_key
        by_line: dict[int, list[tuple[tuple[int, _Key], dict[str, Any]]]] = {}
        for severity in ("deny", "warn"):
            for ln, rule_id in model.rows(severity):
                n, rid = int(ln), str(rule_id)
                t = self._template(rid, severity)
                d = dict(t.base)
                d["message"] = self._message(t, model, n, rid)
                overrider = overrides.get((n, rid))
                if overrider:
                    d["overridden_by"] = overrider
                group = _OVERRIDDEN if overrider else _DENIAL if t.denies else _WARNING
                by_line.setdefault(n, []).append(((group, t.key), d))
        lines = []
        for line in sorted(claim.lines, key=_line_number):
            found = by_line.get(line.line)
            primary = None
            reasons: list[dict[str, Any]] = []
            if found:  # explain.result.assign_roles
                if len(found) > 1:
                    found.sort(key=_place)  # stable, as assign_roles' sorts are
                for (group, _key), d in found:
                    if group == _DENIAL:
                        d["role"] = "supporting" if primary else "primary"
                        primary = primary or d["rule"]
                    else:
                        d["role"] = _ROLES[group]
                    reasons.append(d)
            lines.append(
                {
                    "line": line.line,
                    "code": line.code,
                    "decision": "deny" if primary else "pay",
                    "primary": primary,
                    "reasons": reasons,
                }
            )
        return PlainJson(claim=claim.id, kb=self.version, lines=lines)  # strings, ints, lists, null


_deciders: dict[int, BatchDecider] = {}


def decide_many(kb: PolicyKB, claims: Sequence[Claim]) -> list[dict[str, Any] | Exception]:
    """Scrub's default path: evaluate the chunk in DuckDB, then decide every claim; a claim that
    fails (in evaluation or after) gets its exception in its place, as adjudicate_many does."""
    from engine.api import _isolating

    decider = _deciders.get(id(kb))
    if decider is None or decider.kb is not kb:
        decider = _deciders[id(kb)] = BatchDecider(kb)
    evaluate = functools.partial(kb.duckdb().evaluate_many, messages=decider.request)
    models = _isolating(evaluate, [claim_to_facts(c) for c in claims])
    out: list[dict[str, Any] | Exception] = []
    for claim, model in zip(claims, models, strict=True):
        if isinstance(model, Exception):
            out.append(model)
            continue
        try:
            out.append(decider.decide(claim, model))
        except Exception as e:  # one claim's failure is that claim's error record
            out.append(e)
    return out
