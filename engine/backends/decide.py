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
from typing import TYPE_CHECKING, Any, cast

import orjson

from engine.adjudicate import MESSAGE_SOLUTIONS, _join, guidance_anchor
from engine.backends import BatchModel, MessageRequest
from engine.batch import PlainJson, Written
from engine.claims import Claim, chunk_facts, frozen_maker
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
        self._written: dict[str, dict[str, _WrittenEntry]] = {"deny": {}, "warn": {}}  # severity -> rule id -> entry
        self._kb_lines = b',"kb":' + _dumps(self.version) + b',"lines":['  # decide_written's claim head
        self._line_texts: dict[tuple[str, int], tuple[bytes, bytes, bytes]] = {}  # (code, line) -> _line_text
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

    def _reasons(self, model: Model) -> dict[int, list[_Found]]:
        """Line -> its reasons, each with where explain.result.assign_roles puts it (in-force
        denials, then in-force warnings, then overridden findings, each group by precedence_key),
        its rule's template, message and the rule overriding it."""
        overrides: dict[tuple[int, str], str] = {}
        for ln, rule, by in model.rows("overridden"):
            overrides.setdefault((int(ln), str(rule)), str(by))
        by_line: dict[int, list[_Found]] = {}
        for severity in ("deny", "warn"):
            for ln, rule_id in model.rows(severity):
                n, rid = int(ln), str(rule_id)
                t = self._template(rid, severity)
                overrider = overrides.get((n, rid)) if overrides else None
                group = _OVERRIDDEN if overrider else _DENIAL if t.denies else _WARNING
                found = ((group, t.key), t, self._message(t, model, n, rid), overrider)
                by_line.setdefault(n, []).append(found)
        return by_line

    def decide(self, claim: Claim, model: Model) -> dict[str, Any]:
        """What `Adjudicator.adjudicate(claim, proofs=False, model=model).to_dict()` returns."""
        by_line = self._reasons(model)
        lines = []
        for line in sorted(claim.lines, key=_line_number):
            found = by_line.get(line.line)
            primary = None
            reasons: list[dict[str, Any]] = []
            if found:
                primary, roles = _assign_roles(found)
                for (_place_key, t, message, overrider), role in zip(found, roles, strict=True):
                    d = dict(t.base)
                    d["message"] = message
                    if overrider:
                        d["overridden_by"] = overrider
                    d["role"] = role
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

    def _written_entry(self, rule_id: str, severity: str) -> _WrittenEntry:
        """The rule's _WrittenEntry (its template, reason text and sort keys), made once;
        _Unwritable when orjson cannot write its reason (every time: it is not kept)."""
        t = self._template(rule_id, severity)
        found = _WrittenEntry(t, _ReasonJson(t.base))
        if not found.writable:
            raise _Unwritable
        self._written[severity][rule_id] = found
        return found

    def _line_text(self, code: str, n: int) -> tuple[bytes, bytes, bytes]:
        """A line's text before its reasons, each after a comma: without reasons (the whole line),
        paid with reasons, and denied up to its primary rule id; kept for the next line with the
        same code and number (a batch has a few thousand; bounded by _FILLED_MAX * 16)."""
        code_json, n_json = _dumps(code), _dumps(n)
        found = (_PAY_LINE % (code_json, n_json), _PAY_HEAD % (code_json, n_json), _DENY_HEAD % (code_json, n_json))
        if len(self._line_texts) < _FILLED_MAX * 16:
            self._line_texts[(code, n)] = found
        return found

    def decide_written(self, claim: Claim, model: Model) -> Written | dict[str, Any]:
        """decide's result as engine.batch writes it (its JSONL line and summary counts), written
        straight from each rule's reason text (_WrittenEntry) without building the dicts; decide's
        dict when a value is one orjson cannot write (engine.batch._dumps then writes it).
        The reasons are those of _reasons, in its order (deny rows, then warn rows), and a line's
        are sorted and given roles as _assign_roles does. A BatchModel's rows come from typed
        columns (line numbers int, rule ids str): no conversion."""
        relations = model.relations
        overrides: dict[tuple[int, str], str] = {}
        for ln, rule, by in relations.get("overridden", ()):
            overrides.setdefault((int(ln), str(rule)), str(by))
        solved = model.messages if isinstance(model, BatchModel) else {}
        by_line: dict[int, list[_WrittenFound]] = {}
        try:
            for severity in ("deny", "warn"):
                written = self._written[severity]
                for head in cast("list[tuple[int, str]]", relations.get(severity, ())):
                    n, rid = head  # the outcome row: the messages' key as it is
                    e = written.get(rid) or self._written_entry(rid, severity)
                    message = e.message
                    if e.indices:
                        for index in e.indices:  # Adjudicator._reason: the first compiled rule with solutions
                            values = solved.get((index, head))
                            if values is not None:
                                # filled anew each time: most values tuples differ (they show
                                # the line, its date, its codes), and finding the text of one
                                # already filled hashes and compares its strings, which costs
                                # about what filling them does. The values in the message's
                                # placeholders, joined: one copy of each (%-formatting scanned
                                # the text and grew the result piece by piece, a sixth of this
                                # method's instructions), and here, not in a method (2% more)
                                pieces = e.pieces
                                if pieces is not None:
                                    filled: list[str | None] = [*pieces]
                                    filled[1::2] = values
                                    try:
                                        shown = "".join(filled)  # type: ignore[arg-type]
                                    except TypeError:  # a None: a name the rule does not bind
                                        shown = e.template.fill(values)
                                else:
                                    shown = e.template.fill(values)
                                message = _dumps(shown)
                                break
                    overrider = overrides.get((n, rid)) if overrides else None
                    found = (e.overridden_key, e, message, overrider) if overrider else (e.key, e, message, None)
                    at = by_line.get(n)
                    if at is None:
                        by_line[n] = [found]
                    else:
                        at.append(found)
            # the claim's text as one list of pieces, joined once: a reason's constant parts
            # (most of its text: title, sources, citations) are not copied until then. Every
            # line's first piece starts with the comma before it, cut from the first at the end.
            out = [b'{"claim":', _dumps(claim.id), self._kb_lines]
            denied = 0
            kinds: list[str] = []  # as engine.batch._line_counts counts them
            lines = sorted(claim.lines, key=_line_number)
            texts = self._line_texts
            for line in lines:
                n = line.line
                lt = texts.get((line.code, n)) or self._line_text(line.code, n)
                at = by_line.get(n)
                if at is None:  # no reason at all
                    out.append(lt[0])
                    continue
                if len(at) == 1:  # most lines with reasons: no sort, no list of the others
                    key, e, message, overrider = at[0]
                    if key[0] == _DENIAL:
                        denied += 1
                        kinds.append(e.deny_kind)  # type: ignore[arg-type]  # a denial's: never None
                        out += (lt[2], e.primary_head, message, e.primary_end)
                    elif overrider:
                        out.append(lt[1])
                        out += e.overridden_parts(message, _dumps(overrider))
                        out.append(b"]}")
                    else:
                        out += (lt[1], e.head, message, e.warning_end)
                    continue
                if len(at) > 2:
                    at.sort(key=_place)
                elif at[1][0] < at[0][0]:  # two (most lines with several): sorted as stably, without a sort's set-up
                    at.reverse()
                key, e, message, overrider = at[0]
                if key[0] == _DENIAL:  # sorted first: the primary reason
                    denied += 1
                    kinds += [f[1].deny_kind for f in at if f[1].deny_kind is not None]
                    out += (lt[2], e.primary_head, message, e.primary)
                elif overrider:
                    out.append(lt[1])
                    out += e.overridden_parts(message, _dumps(overrider))
                else:
                    out += (lt[1], e.head, message, e.warning)
                for key, e, message, overrider in at[1:]:
                    if overrider:
                        out.append(b",")
                        out += e.overridden_parts(message, _dumps(overrider))
                    else:  # the primary is the first: a later denial in force supports it
                        out += (b",", e.head, message, e.supporting if key[0] == _DENIAL else e.warning)
                out.append(b"]}")
            if lines:  # the first line's first piece: no comma before it
                out[3] = out[3][1:]
            out.append(b"]}\n")
            text = b"".join(out)
        except (orjson.JSONEncodeError, _Unwritable):
            return self.decide(claim, model)
        return _new_written(text, len(lines), denied, tuple(kinds))


class _WrittenEntry:
    """A rule's reason (one rule id and severity) as decide_written writes it: the JSON text
    around its message (written by orjson) and role, each role's tail made once, its place in a
    line's sorted reasons in force and overridden, and its message's pieces to fill."""

    __slots__ = (
        "denies",
        "deny_kind",
        "head",
        "indices",
        "json",
        "key",
        "message",
        "overridden_key",
        "pieces",
        "primary",
        "primary_end",
        "primary_head",
        "rule_json",
        "supporting",
        "template",
        "warning",
        "warning_end",
        "writable",
    )

    def __init__(self, template: _RuleTemplate, json: _ReasonJson):
        self.template = template
        self.json = json
        self.denies = template.denies
        self.deny_kind = json.deny_kind
        self.indices = template.rule_indices if template.templated else ()
        # the message's literal text and placeholders, alternating, when it shows each of its
        # names once, in order (most do): the values go in the placeholders' places as they are
        names = [k for _i, k in template.slots]
        in_order = bool(names) and names == list(range(len(names)))
        self.pieces = template.pieces if in_order else None
        self.key = (_DENIAL if template.denies else _WARNING, template.key)
        self.overridden_key = (_OVERRIDDEN, template.key)
        self.rule_json = _dumps(template.base["rule"])
        try:
            message: bytes | None = _dumps(template.message)
        except orjson.JSONEncodeError:
            message = None
        self.message = message or b""
        # otherwise _written_entry declines the rule (engine.batch._dumps writes its results)
        self.writable = message is not None and json.plain is not None and json.overridden is not None
        # the reason in force: head + message + the role's tail
        a, b, c = json.plain or (b"", b"", b"")
        self.head = a
        self.primary_head = self.rule_json + b',"reasons":[' + a  # a denied line's primary rule id on
        self.primary, self.supporting, self.warning = (
            b + _ROLE_JSON[r] + c for r in ("primary", "supporting", "warning")
        )
        # a line's only reason: the tail and the line's end
        self.primary_end, self.warning_end = self.primary + b"]}", self.warning + b"]}"

    def overridden_parts(self, message: bytes, overrider: bytes) -> tuple[bytes, ...]:
        a, b, c, d = self.json.overridden or (b"", b"", b"", b"")
        return (a, message, b, overrider, c, _ROLE_OVERRIDDEN, d)


_new_written = frozen_maker(Written)  # Written(line, lines, denied, deny_kinds) without the frozen __init__
_WrittenFound = tuple[tuple[int, _Key], _WrittenEntry, bytes, str | None]
_FILLED_MAX = 1 << 10  # a sixteenth of the line texts kept (_line_text)
# the text of a line before its reasons, after the comma between lines (_line_text)
_DENY_HEAD = b',{"code":%b,"decision":"deny","line":%b,"primary":'  # then _WrittenEntry.primary_head
_PAY_HEAD = b',{"code":%b,"decision":"pay","line":%b,"primary":null,"reasons":['
_PAY_LINE = b',{"code":%b,"decision":"pay","line":%b,"primary":null,"reasons":[]}'


_Found = tuple[tuple[int, _Key], "_RuleTemplate", str, str | None]

# A result's JSON text around its values, keys in sorted order as engine.batch._dumps writes them
# (orjson, OPT_SORT_KEYS): each value written by orjson on its own is written as in the whole.
_ROLE_JSON = {role: orjson.dumps(role) for role in ("primary", "supporting", *_ROLES.values())}
_ROLE_OVERRIDDEN = _ROLE_JSON["overridden"]


def _assign_roles(found: list[_Found]) -> tuple[str | None, list[str]]:
    """explain.result.assign_roles over one line's reasons, sorted here in place (stably, as its
    sorts are): the line's primary rule id, and each reason's role in the sorted order."""
    if len(found) > 1:
        found.sort(key=_place)
    primary = None
    roles = []
    for (group, _key), t, *_rest in found:
        if group == _DENIAL:
            roles.append("supporting" if primary else "primary")
            primary = primary or t.base["rule"]
        else:
            roles.append(_ROLES[group])
    return primary, roles


_dumps = orjson.dumps  # the values written one by one are str and int (no dict: no keys to sort)


class _Unwritable(Exception):
    """A rule whose reason orjson cannot write (engine.batch._dumps then writes the result)."""


class _ReasonJson:
    """A rule's reason (one rule id and severity) as JSON text around the values decide sets per
    line (message, overridden_by when overridden, role: in sorted key order, as they are): the
    base's keys and values are written once, each in its place in sorted key order (None: orjson
    cannot write them). _WrittenEntry writes reasons from these pieces."""

    __slots__ = ("deny_kind", "overridden", "plain")

    def __init__(self, base: dict[str, Any]):
        # what engine.batch._line_counts counts of a denied line's reason
        self.deny_kind = (base.get("kind") or "unspecified") if base.get("severity", "deny") == "deny" else None
        try:
            self.plain: tuple[bytes, ...] | None = _pieces(base, ("message", "role"))
            self.overridden: tuple[bytes, ...] | None = _pieces(base, ("message", "overridden_by", "role"))
        except orjson.JSONEncodeError:  # write refuses: engine.batch._dumps writes this rule's results
            self.plain = self.overridden = None


def _pieces(base: dict[str, Any], dynamic: tuple[str, ...]) -> tuple[bytes, ...]:
    """The dict base with the keys `dynamic` set, as orjson writes it with sorted keys, cut where
    each dynamic key's value goes (the values of base's keys of those names are replaced)."""
    assert list(dynamic) == sorted(dynamic), dynamic
    out: list[bytes] = []
    text = b"{"
    for i, key in enumerate(sorted(set(base) | set(dynamic))):
        text += (b"," if i else b"") + _dumps(key) + b":"
        if key in dynamic:
            out.append(text)
            text = b""
        else:
            text += orjson.dumps(base[key], option=orjson.OPT_SORT_KEYS)
    out.append(text + b"}")
    return tuple(out)


_deciders: dict[int, BatchDecider] = {}


def decide_many(kb: PolicyKB, claims: Sequence[Claim], *, written: bool = False) -> list[Any]:
    """Scrub's default path: evaluate the chunk in DuckDB, then decide every claim; a claim that
    fails (in evaluation or after) gets its exception in its place, as adjudicate_many does.
    `written`: each result as engine.batch writes it (BatchDecider.decide_written), not a dict."""
    from engine.api import _isolating

    decider = _deciders.get(id(kb))
    if decider is None or decider.kb is not kb:
        decider = _deciders[id(kb)] = BatchDecider(kb)
    evaluate = functools.partial(kb.duckdb().evaluate_many, messages=decider.request)
    models = _isolating(evaluate, chunk_facts(claims))
    held = cast("list[object]", models)  # a list of its own (_isolating's)
    decide = decider.decide_written if written else decider.decide
    out: list[Any] = []
    for i, (claim, model) in enumerate(zip(claims, models, strict=True)):
        # each model is freed once its claim is decided (when `model` moves on), while its
        # objects are still in the CPU's caches, not all at the end (measured: a few us a claim)
        held[i] = None
        if isinstance(model, Exception):
            out.append(model)
            continue
        try:
            out.append(decide(claim, model))
        except Exception as e:  # one claim's failure is that claim's error record
            out.append(e)
    return out
