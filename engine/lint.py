"""Lint: warnings about a KB that is valid but probably not what its author meant.

Run by `policykb check` after the checker's passes (engine/checks.py) on a KB that has no
errors; `--strict` turns every warning into an error. Each pass is small and named, reads the
program (and, where it must, the stored tables and the policy cases), and returns diagnostics
with a code, a location and a one-line fix hint (the `fix:` note).

What each code means:

- `rule-without-case`: a `deny` rule with an `@id` that no policy case lists in its `about`.
  (A deny rule without `@source`, `@group` or `@carc` is already the checker's
  `missing-annotation` error, and an unknown group/CARC/RARC its `unknown-code` error.)
- `rule-never-fires`: a rule whose body needs (positively) a relation nothing can fill: no
  fact, not `.input`, not `.claim`, and no rule deriving it that can itself fire.
- `rule-shadowed`: a rule that derives nothing another rule with the same head relation does
  not already derive: the other rule's head and body map onto this one's by a renaming of
  variables with the body a subset (theta-subsumption, so the finding is never a false alarm;
  `_` inside a negation only matches `_`, and a rule with an aggregate is never the general one).
- `code-range-inverted`, `code-range-overlap`: facts of a relation with attributes `low` and
  `high` (e.g. `code_range(name, low, high)`) whose bounds are inverted, or two ranges that
  overlap without one containing the other (nesting, e.g. chemotherapy drugs inside drugs, is a
  deliberate sub-range and not reported; equal bounds under two names are).
- `unknown-code-in-fact`: a KB fact whose code-typed attribute names a code that no code table
  has. A code table is a stored (`.input`) relation with an attribute named `code` of a declared
  domain type (e.g. `Code`); a fact attribute of the same type is checked against all of them (range bounds `low`/`high` are
  bounds, not codes, and are not checked).
- `no-precedence`: two rules decide the same line opposite ways with no stated precedence. In
  this KB a line is denied by `deny(line, "A")` and nothing ever decides "pay" except by setting
  a denial aside: `overridden(line, "A", "B")` says rule A's finding on that line is set aside in
  favour of rule B. So *opposite* means: a deny rule A and a rule deriving `overridden(_, "A",
  "B")`. The precedence is stated when A and B both carry `@precedence` and B's number is lower
  (B outranks A, as in the choice of a line's primary reason). Reported: an override whose A or B
  lacks `@precedence`, whose numbers say A outranks B, whose A is not a constant (it would set
  aside any rule), or whose A or B names no deny/warn rule.
- `remedy-syntax`, `remedy-unknown-code`, `remedy-unknown-modifier`, `remedy-placeholder`: a
  `@remedy` that does not parse (grammar in engine/explain/remedies.py, whose parser is used
  here), names a code no code table has or a modifier no modifier table (a stored relation whose
  first attribute is `modifier`) has, or uses a `{placeholder}` that is not a variable of the
  rule. Placeholders in `@message` are the checker's own `bad-annotation` error already.
- `cases-unreadable`: a `.cases.json` file that cannot be read (then `rule-without-case` is skipped).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.analysis import RuleIndex, body_uses
from engine.diagnostics import Diagnostic, Location, Severity
from engine.explain.remedies import PLACEHOLDER, RemedySpecError, parse_spec
from engine.kb import LoadedKB
from engine.program import OUTCOME_RELATIONS, Program, display_path
from engine.syntax import nodes as A

OVERRIDE_RELATION = "overridden"

Lookup = Callable[[str, int, A.Value], bool]  # (relation, position, value) -> a row has it


@dataclass
class LintContext:
    """What lint passes may read besides the program: stored-table look-ups and the cases."""

    program: Program
    lookup: Lookup | None = None  # None: no tables (passes that need them are skipped)
    case_about: set[str] | None = None  # rule ids named in some case's `about`; None: not known
    index: RuleIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = RuleIndex.of_program(self.program)


Pass = Callable[[LintContext], list[Diagnostic]]


def _warn(code: str, message: str, loc: Location, fix: str) -> Diagnostic:
    return Diagnostic(code, message, loc, Severity.WARNING, notes=(f"fix: {fix}",))


# --- deny rules without a case ---------------------------------------------------------------


def lint_cases(ctx: LintContext) -> list[Diagnostic]:
    if ctx.case_about is None:
        return []
    out = []
    for r in ctx.program.rules:
        rid = r.rule_id
        if r.head.pred == "deny" and rid and rid not in ctx.case_about:
            out.append(
                _warn(
                    "rule-without-case",
                    f"deny rule {rid} is in no policy case's `about`",
                    r.loc,
                    f"add a case that fires {rid} and a near miss to the .cases.json beside this file",
                )
            )
    return out


# --- rules that can never fire ---------------------------------------------------------------


def fillable_relations(prog: Program) -> set[str]:
    """Relations that can hold a row: facts, tables, the claim, and heads of rules whose positive
    body relations are all fillable (to a fixpoint). Aggregates are not required (a count of
    nothing is still a value)."""
    filled = {f.atom.pred for f in prog.facts} | set(prog.inputs) | set(prog.claim_relations)
    changed = True
    while changed:
        changed = False
        for r in prog.rules:
            if r.head.pred not in filled and all(rel in filled for rel in _positive(r)):
                filled.add(r.head.pred)
                changed = True
    return filled


def _positive(rule: A.Rule) -> list[str]:
    return [rel for rel, negative, _loc in body_uses(rule.body) if not negative]


def lint_never_fires(ctx: LintContext) -> list[Diagnostic]:
    prog = ctx.program
    filled = fillable_relations(prog)
    out = []
    for r in prog.rules:
        for lit in r.body:
            if isinstance(lit, A.Atom) and lit.pred not in filled and lit.pred in prog.decls:
                derived = lit.pred in ctx.index.by_head
                why = (
                    "every rule deriving it can never fire"
                    if derived
                    else "it has no facts, no rules, and is neither .input nor .claim"
                )
                out.append(
                    _warn(
                        "rule-never-fires",
                        f"{_name(r)} can never fire: its body needs {lit.pred}, and {why}",
                        lit.loc,
                        f"add facts or a rule for {lit.pred}, mark it .input/.claim, or remove the rule",
                    )
                )
                break
    return out


def _name(r: A.Rule) -> str:
    return f"rule {r.rule_id}" if r.rule_id else f"the rule for {r.head.pred}"


# --- shadowed rules --------------------------------------------------------------------------

Key = tuple  # a specific rule's term, normalised (locations dropped, each `_` distinct)


def _key(t: A.Term) -> Key:
    if isinstance(t, A.Var):
        return ("_", t.loc.line, t.loc.col) if t.anonymous else ("v", t.name)
    if isinstance(t, A.Const):
        return ("c", type(t.value).__name__, t.value)
    return ("op", t.op, _key(t.left), _key(t.right))


def _match_term(g: A.Term, s: A.Term, theta: dict[str, Key], negated: bool) -> dict[str, Key] | None:
    if isinstance(g, A.Var):
        if negated and (g.anonymous != (isinstance(s, A.Var) and s.anonymous)):
            return None  # `!p(_)` (no p at all) is not `!p(x)`
        if g.anonymous:
            return theta
        k = _key(s)
        if g.name in theta:
            return theta if theta[g.name] == k else None
        return {**theta, g.name: k}
    if isinstance(g, A.Const):
        return theta if isinstance(s, A.Const) and type(s.value) is type(g.value) and s.value == g.value else None
    if isinstance(s, A.BinOp) and s.op == g.op:
        t2 = _match_term(g.left, s.left, theta, negated)
        return _match_term(g.right, s.right, t2, negated) if t2 is not None else None
    return None


def _match_terms(
    gs: Iterable[A.Term], ss: Iterable[A.Term], theta: dict[str, Key] | None, negated: bool = False
) -> dict[str, Key] | None:
    gl, sl = list(gs), list(ss)
    if len(gl) != len(sl):
        return None
    for g, s in zip(gl, sl, strict=True):
        if theta is None:
            return None
        theta = _match_term(g, s, theta, negated)
    return theta


_MIRROR = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "!=": "!="}


def _match_literal(g: A.Literal, s: A.Literal, theta: dict[str, Key]) -> list[dict[str, Key]]:
    if isinstance(g, A.Atom) and isinstance(s, A.Atom) and g.pred == s.pred:
        found = _match_terms(g.args, s.args, theta)
        return [found] if found is not None else []
    if isinstance(g, A.Negation) and isinstance(s, A.Negation) and g.atom.pred == s.atom.pred:
        found = _match_terms(g.atom.args, s.atom.args, theta, negated=True)
        return [found] if found is not None else []
    if isinstance(g, A.Comparison) and isinstance(s, A.Comparison):
        out = []
        if g.op == s.op:
            t = _match_terms((g.left, g.right), (s.left, s.right), theta)
            if t is not None:
                out.append(t)
        if _MIRROR[g.op] == s.op:
            t = _match_terms((g.left, g.right), (s.right, s.left), theta)
            if t is not None:
                out.append(t)
        return out
    if isinstance(g, A.Match) and isinstance(s, A.Match) and g.negated == s.negated:
        found = _match_terms((g.pattern, g.value), (s.pattern, s.value), theta)
        return [found] if found is not None else []
    return []


def subsumes(general: A.Rule, specific: A.Rule) -> bool:
    """Whether every fact `specific` derives, `general` derives too: a renaming of general's
    variables maps its head onto specific's head and each of its body literals onto one of
    specific's (theta-subsumption, sound for negation and comparisons as written)."""
    if general.head.pred != specific.head.pred or any(isinstance(lit, A.Aggregate) for lit in general.body):
        return False
    start = _match_terms(general.head.args, specific.head.args, {})
    if start is None:
        return False

    def search(i: int, theta: dict[str, Key]) -> bool:
        if i == len(general.body):
            return True
        return any(search(i + 1, t2) for s in specific.body for t2 in _match_literal(general.body[i], s, theta))

    return search(0, start)


def lint_shadowed(ctx: LintContext) -> list[Diagnostic]:
    rules = ctx.program.rules
    out = []
    for positions in ctx.index.by_head.values():
        for i, j in itertools.permutations(positions, 2):
            specific, general = rules[i], rules[j]
            if not subsumes(general, specific):
                continue
            if i < j and subsumes(specific, general):
                continue  # the same rule twice: report only the later copy
            out.append(
                _warn(
                    "rule-shadowed",
                    f"{_name(specific)} derives nothing that {_name(general)} at {general.loc} does not: "
                    "its body contains that rule's body (up to renaming)",
                    specific.loc,
                    "delete it, or change it so it derives something the other rule does not",
                )
            )
            break
    return _first_per_location(out)


def _first_per_location(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[Location] = set()
    out = []
    for d in diags:
        if d.location not in seen:
            seen.add(d.location)
            out.append(d)
    return out


# --- code ranges -----------------------------------------------------------------------------


def lint_code_ranges(ctx: LintContext) -> list[Diagnostic]:
    prog = ctx.program
    out = []
    for name, decl in sorted(prog.decls.items()):
        attrs = [a.name for a in decl.attrs]
        if "low" not in attrs or "high" not in attrs:
            continue
        lo, hi = attrs.index("low"), attrs.index("high")
        ranges = []
        for f in prog.facts:
            if f.atom.pred != name or len(f.atom.args) != len(attrs):
                continue
            low, high = f.atom.args[lo], f.atom.args[hi]
            if not (
                isinstance(low, A.Const)
                and isinstance(high, A.Const)
                and isinstance(low.value, str)
                and isinstance(high.value, str)
            ):
                continue
            label = ", ".join(str(a) for i, a in enumerate(f.atom.args) if i not in (lo, hi)) or name
            if low.value > high.value:
                out.append(
                    _warn(
                        "code-range-inverted",
                        f"{name} {label}: low {low.value} is above high {high.value}",
                        f.loc,
                        "swap the two bounds",
                    )
                )
                continue
            ranges.append((low.value, high.value, label, f))
        for (l1, h1, n1, _f1), (l2, h2, n2, f2) in itertools.combinations(ranges, 2):
            if h1 < l2 or h2 < l1:
                continue
            nested = (l1 <= l2 and h2 <= h1) or (l2 <= l1 and h1 <= h2)
            if nested and (l1, h1) != (l2, h2):
                continue
            what = "has the same bounds as" if (l1, h1) == (l2, h2) else "overlaps"
            out.append(
                _warn(
                    "code-range-overlap",
                    f"{name} {n2} ({l2}-{h2}) {what} {n1} ({l1}-{h1}) at {_f1.loc}",
                    f2.loc,
                    "make the ranges disjoint, or nest one wholly inside the other",
                )
            )
    return out


# --- codes in facts and remedies ---------------------------------------------------------------


def code_tables(prog: Program) -> dict[str, list[tuple[str, int]]]:
    """Type name -> the stored relations (and position) with an attribute named `code` of that type."""
    out: dict[str, list[tuple[str, int]]] = {}
    for name in sorted(prog.inputs):
        decl = prog.decls.get(name)
        if decl is None:
            continue
        for i, a in enumerate(decl.attrs):
            if a.name == "code" and a.type in prog.type_decls:  # a domain type, not plain symbol
                out.setdefault(a.type, []).append((name, i))
    return out


def modifier_tables(prog: Program) -> list[tuple[str, int]]:
    return [
        (name, 0)
        for name in sorted(prog.inputs)
        if (d := prog.decls.get(name)) is not None and d.attrs and d.attrs[0].name == "modifier"
    ]


def _known(ctx: LintContext, tables: list[tuple[str, int]], value: A.Value) -> bool:
    assert ctx.lookup is not None
    return any(ctx.lookup(rel, pos, value) for rel, pos in tables)


def lint_fact_codes(ctx: LintContext) -> list[Diagnostic]:
    prog = ctx.program
    tables = code_tables(prog)
    if ctx.lookup is None or not tables:
        return []
    out = []
    for f in prog.facts:
        decl = prog.decls.get(f.atom.pred)
        if decl is None or f.atom.pred in prog.inputs or len(decl.attrs) != len(f.atom.args):
            continue
        for attr, arg in zip(decl.attrs, f.atom.args, strict=True):
            where = tables.get(attr.type)
            if not where or attr.name in ("low", "high") or not isinstance(arg, A.Const):
                continue
            if not _known(ctx, where, arg.value):
                shown = ", ".join(rel for rel, _ in where)
                out.append(
                    _warn(
                        "unknown-code-in-fact",
                        f"{f.atom.pred}: code {arg.value} is in no code table ({shown})",
                        arg.loc,
                        "correct the code, or add it to a code table if it is real",
                    )
                )
    return out


def lint_remedies(ctx: LintContext) -> list[Diagnostic]:
    prog = ctx.program
    codes = [t for ts in code_tables(prog).values() for t in ts]
    mods = modifier_tables(prog)
    out = []
    for r in prog.rules:
        names = {v.name for v in A.literal_vars(r.head)} | {v.name for lit in r.body for v in A.literal_vars(lit)}
        for e in r.doc.entries:
            if e.key != "remedy":
                continue
            try:
                spec = parse_spec(e.value)
            except RemedySpecError as exc:
                out.append(
                    _warn(
                        "remedy-syntax",
                        f"@remedy {e.value!r}: {exc}",
                        e.loc,
                        "write add-modifier MOD..., set-units N, replace-code CODE or replace-modifier OLD NEW",
                    )
                )
                continue
            for arg in spec.args:
                for m in PLACEHOLDER.finditer(arg):
                    if m.group(1) not in names:
                        out.append(
                            _warn(
                                "remedy-placeholder",
                                f"@remedy uses {{{m.group(1)}}}, which is not a variable of the rule",
                                e.loc,
                                "name a variable the rule binds",
                            )
                        )
            if ctx.lookup is None:
                continue
            literal = [a for a in spec.args if not PLACEHOLDER.search(a)]
            if spec.verb == "replace-code" and codes:
                for code in literal:
                    if not _known(ctx, codes, code):
                        out.append(
                            _warn(
                                "remedy-unknown-code",
                                f"@remedy replace-code {code}: {code} is in no code table",
                                e.loc,
                                "name a code the code tables list",
                            )
                        )
            if spec.verb in ("add-modifier", "replace-modifier") and mods:
                for mod in literal:
                    if not _known(ctx, mods, mod):
                        out.append(
                            _warn(
                                "remedy-unknown-modifier",
                                f"@remedy {spec.verb}: modifier {mod} is in no modifier table",
                                e.loc,
                                "name a modifier the modifier table lists",
                            )
                        )
    return out


# --- opposite decisions without precedence ------------------------------------------------------


def lint_precedence(ctx: LintContext) -> list[Diagnostic]:
    prog = ctx.program
    outcome = {r.rule_id: r for r in prog.rules if r.rule_id and r.head.pred in OUTCOME_RELATIONS}
    out = []
    for r in prog.rules:
        if r.head.pred != OVERRIDE_RELATION or len(r.head.args) != 3:
            continue
        target, winner = r.head.args[1], r.head.args[2]
        if not isinstance(target, A.Const):
            out.append(
                _warn(
                    "no-precedence",
                    f"{_name(r)} sets aside the denial of whichever rule {target} is",
                    target.loc,
                    "name the rule it sets aside as a string constant",
                )
            )
            continue
        named = {str(target.value): target.loc}
        if isinstance(winner, A.Const):
            named[str(winner.value)] = winner.loc
        unknown = [(rid, loc) for rid, loc in named.items() if rid not in outcome]
        for rid, loc in unknown:
            out.append(
                _warn(
                    "no-precedence",
                    f"{_name(r)} names {rid}, which is no deny or warn rule",
                    loc,
                    "use the @id of an existing deny or warn rule",
                )
            )
        if unknown or not isinstance(winner, A.Const):
            continue
        a, b = outcome[str(target.value)], outcome[str(winner.value)]
        pa, pb = _precedence(a), _precedence(b)
        if pa is None or pb is None:
            lacking = " and ".join(x.rule_id or "" for x, p in ((a, pa), (b, pb)) if p is None)
            out.append(
                _warn(
                    "no-precedence",
                    f"{_name(r)} sets aside {a.rule_id} in favour of {b.rule_id}, but no @precedence orders "
                    f"them ({lacking} has none)",
                    r.loc,
                    f"give {b.rule_id} a lower @precedence than {a.rule_id}",
                )
            )
        elif pb >= pa:
            out.append(
                _warn(
                    "no-precedence",
                    f"{_name(r)} sets aside {a.rule_id} in favour of {b.rule_id}, but @precedence ranks "
                    f"{a.rule_id} ({pa}) at or above {b.rule_id} ({pb})",
                    r.loc,
                    f"give {b.rule_id} a lower @precedence than {a.rule_id}",
                )
            )
    return out


def _precedence(r: A.Rule) -> int | None:
    text = (r.doc.get("precedence") or "").strip()
    try:
        return int(text)
    except ValueError:
        return None


PASSES: list[tuple[str, Pass]] = [
    # name, pass: run in this order after the checker's passes, on a KB without errors
    ("cases", lint_cases),
    ("never-fires", lint_never_fires),
    ("shadowed", lint_shadowed),
    ("code-ranges", lint_code_ranges),
    ("fact-codes", lint_fact_codes),
    ("precedence", lint_precedence),
    ("remedies", lint_remedies),
]


def run_passes(ctx: LintContext) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for _pass_name, fn in PASSES:
        out.extend(fn(ctx))
    return sorted(out, key=Diagnostic.sort_key)


def lint_kb(kb: LoadedKB) -> list[Diagnostic]:
    """The lint warnings of a loaded KB (none while it has errors: fix those first)."""
    from engine.testing import CaseFileError, load_cases

    if kb.errors or kb.compiled is None:
        return []
    store = kb.store
    out: list[Diagnostic] = []
    about: set[str] | None
    try:
        about = {rid for case in load_cases(kb.root) for rid in case.about}
    except CaseFileError as exc:
        about = None
        out.append(
            _warn(
                "cases-unreadable",
                f"{exc.where}: {exc.problem}",
                Location(_shown(kb, exc.path)),
                "fix the cases file (policykb test names the same problem)",
            )
        )
    ctx = LintContext(kb.program, lambda rel, pos, value: bool(store.lookup(rel, (pos,), (value,))), about)
    return sorted(out + run_passes(ctx), key=Diagnostic.sort_key)


def _shown(kb: LoadedKB, path: object) -> str:
    return display_path(kb.root, Path(str(path)))
