"""Policy cases: load `**/*.cases.json` beside the rules, run them, and measure coverage.

A cases file sits next to the rule file it tests and holds `{"cases": [...]}`; each case has a
`name`, the rule ids it is `about`, a `claim` (the JSON engine/claims.py reads) and `expect`:
per line number, the `decision` and the sorted ids of the reasons in force on that line (deny
and warn reasons not overridden), and optionally `overridden`, the ids of reasons present but
set aside by a higher-precedence rule (only compared when the case lists it).

This module is the one runner: `policykb test` and tests/test_policy_cases.py both call it.
Coverage (`coverage`) says, per rule with an `@id`, the cases about it where it fires and the
near misses (cases about it where it stays silent), and which relations and stored table rows
no case touched. Table rows are counted from the proofs' table sources, so normal evaluation
pays nothing for it; only a coverage run builds proofs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.claims import ClaimError, parse_claim
from engine.explain.result import ClaimResult
from engine.program import Program
from engine.syntax import nodes as A

if TYPE_CHECKING:
    from engine.api import PolicyKB

CASES_GLOB = "*.cases.json"


class CaseFileError(ValueError):
    """A cases file that cannot be read, naming the file, the case and the field."""

    def __init__(self, path: Path, where: str, problem: str):
        self.path, self.where, self.problem = path, where, problem
        super().__init__(f"{path}: {where}: {problem}")


@dataclass(frozen=True)
class Case:
    file: Path
    name: str
    about: tuple[str, ...]
    claim: dict[str, Any]
    expect: dict[str, dict[str, Any]]
    root: Path | None = None

    @property
    def id(self) -> str:
        return f"{self.file.name.removesuffix('.cases.json')}: {self.name}"

    @property
    def shown_file(self) -> str:
        """The file as shown to a reader: from the KB directory's own name (kb/ncci/...)."""
        if self.root is None:
            return self.file.as_posix()
        try:
            return (Path(self.root.resolve().name) / self.file.resolve().relative_to(self.root.resolve())).as_posix()
        except ValueError:
            return self.file.as_posix()


def case_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob(CASES_GLOB) if p.is_file())


def load_cases(root: Path) -> list[Case]:
    """Every case under `root`, in file order; raises CaseFileError on the first malformed file."""
    cases: list[Case] = []
    for path in case_files(root):
        cases.extend(_load_file(path, Path(root)))
    return cases


def _load_file(path: Path, root: Path) -> Iterator[Case]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CaseFileError(path, f"line {exc.lineno}", f"not valid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(path, "file", f"cannot read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise CaseFileError(path, "$", 'expected an object {"cases": [...]}')
    for i, raw in enumerate(data["cases"]):
        where = f"cases[{i}]"
        if not isinstance(raw, dict):
            raise CaseFileError(path, where, "expected a case object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise CaseFileError(path, f"{where}.name", "expected a non-empty string")
        where = f"case {name!r}"
        about = raw.get("about", [])
        if not isinstance(about, list) or not all(isinstance(a, str) for a in about):
            raise CaseFileError(path, f"{where}: about", "expected a list of rule ids")
        if not isinstance(raw.get("claim"), dict):
            raise CaseFileError(path, f"{where}: claim", "expected a claim object")
        expect = raw.get("expect")
        if not isinstance(expect, dict):
            raise CaseFileError(path, f"{where}: expect", "expected an object keyed by line number")
        for number, want in expect.items():
            if (
                not isinstance(want, dict)
                or want.get("decision") not in ("deny", "pay")
                or not isinstance(want.get("rules"), list)
            ):
                raise CaseFileError(
                    path, f"{where}: expect.{number}", 'expected {"decision": "deny"|"pay", "rules": [...]}'
                )
        yield Case(path, name, tuple(about), raw["claim"], expect, root)


# --- running ------------------------------------------------------------------------------


def observed(line: dict[str, Any]) -> dict[str, Any]:
    """A result line in the shape of an `expect` entry."""
    reasons = line["reasons"]
    out: dict[str, Any] = {
        "decision": line["decision"],
        "rules": sorted(r["rule"] for r in reasons if not r.get("overridden_by")),
    }
    overridden = sorted(r["rule"] for r in reasons if r.get("overridden_by"))
    if overridden:
        out["overridden"] = overridden
    return out


def _wanted(want: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"decision": want["decision"], "rules": sorted(want["rules"])}
    if want.get("overridden"):
        out["overridden"] = sorted(want["overridden"])
    return out


@dataclass
class LineMismatch:
    line: str
    expected: dict[str, Any] | None  # None: the claim has the line but `expect` does not list it
    actual: dict[str, Any] | None  # None: `expect` lists a line the claim does not have


@dataclass
class CaseOutcome:
    case: Case
    result: ClaimResult | None = None
    mismatches: list[LineMismatch] = field(default_factory=list)
    error: str | None = None  # the claim could not be adjudicated

    @property
    def passed(self) -> bool:
        return self.error is None and not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"case": self.case.name, "file": self.case.shown_file, "passed": self.passed}
        if self.error:
            d["error"] = self.error
        if self.mismatches:
            d["mismatches"] = [{"line": m.line, "expected": m.expected, "actual": m.actual} for m in self.mismatches]
            if self.result is not None:  # the actual decisions with their reasons (and proofs when built)
                wrong = {m.line for m in self.mismatches}
                d["actual_lines"] = [ln.to_dict() for ln in self.result.lines if str(ln.line) in wrong]
        return d


def compare(case: Case, result: dict[str, Any]) -> list[LineMismatch]:
    """Each line where the adjudication differs from the case's `expect` (`overridden` is only
    compared when the case lists it for that line)."""
    got = {str(ln["line"]): observed(ln) for ln in result["lines"]}
    out = []
    for number in sorted(set(got) | set(case.expect), key=_line_order):
        want = case.expect.get(number)
        actual = got.get(number)
        if want is None or actual is None:
            out.append(LineMismatch(number, _wanted(want) if want else None, actual))
            continue
        if "overridden" not in want:
            actual = {k: v for k, v in actual.items() if k != "overridden"}
        if actual != _wanted(want):
            out.append(LineMismatch(number, _wanted(want), actual))
    return out


def _line_order(n: str) -> tuple[int, str]:
    return (int(n), n) if n.isdigit() else (1 << 30, n)


def run_case(kb: PolicyKB, case: Case, *, proofs: bool = False) -> CaseOutcome:
    """Adjudicate one case and compare it with what the case expects."""
    try:
        claim = parse_claim(case.claim, source=case.shown_file)
    except ClaimError as exc:
        return CaseOutcome(case, error=f"the case's claim cannot be read: {exc}")
    result = kb.adjudicate(claim, proofs=proofs, remedies=False)
    return CaseOutcome(case, result, compare(case, result.to_dict()))


def run_cases(kb: PolicyKB, cases: Iterable[Case], *, proofs: bool = False) -> list[CaseOutcome]:
    return [run_case(kb, c, proofs=proofs) for c in cases]


# --- coverage -----------------------------------------------------------------------------

Sign = tuple[str, str | None]  # (reason rule id, overridden_by or None)


def rule_observers(program: Program) -> dict[str, list[Sign]]:
    """Rule id -> how to see it in a result.

    A rule deriving `deny(_, "id")` or `warn(_, "id")` shows as a reason with that id (in force
    or overridden); a rule deriving `overridden(_, "rule", "by")` shows as a reason `rule`
    marked overridden by `by`. Rules deriving anything else have no observer (not listed).
    """
    out: dict[str, list[Sign]] = {}
    for rule in program.rules:
        rid = rule.rule_id
        if not rid:
            continue
        consts = [a.value if isinstance(a, A.Const) else None for a in rule.head.args]
        if rule.head.pred in ("deny", "warn") and len(consts) == 2:
            out.setdefault(rid, []).append((str(consts[1]), None))
        elif (
            rule.head.pred == "overridden"
            and len(consts) == 3
            and isinstance(consts[1], str)
            and isinstance(consts[2], str)
        ):
            out.setdefault(rid, []).append((consts[1], consts[2]))
    return out


def fires(result: dict[str, Any], signs: list[Sign]) -> bool:
    for line in result["lines"]:
        for r in line["reasons"]:
            for rule, by in signs:
                if r["rule"] == rule and (by is None or r.get("overridden_by") == by):
                    return True
    return False


@dataclass
class RuleCoverage:
    rule: str
    location: str
    fired: list[str]  # cases about the rule where it fires
    near_misses: list[str]  # cases about the rule where it stays silent
    fired_elsewhere: list[str]  # cases not about the rule where it fires

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "location": self.location,
            "fired": self.fired,
            "near_misses": self.near_misses,
            "fired_elsewhere": self.fired_elsewhere,
        }


@dataclass
class TableCoverage:
    relation: str
    rows: int
    touched: int

    def to_dict(self) -> dict[str, Any]:
        return {"relation": self.relation, "rows": self.rows, "touched": self.touched}


@dataclass
class Coverage:
    rules: list[RuleCoverage]
    relations_untouched: list[str]
    tables: list[TableCoverage]
    unobserved_rules: list[str]  # rules with an @id whose effect no result shows

    @property
    def never_fired(self) -> list[str]:
        return [r.rule for r in self.rules if not r.fired]

    @property
    def no_near_miss(self) -> list[str]:
        return [r.rule for r in self.rules if not r.near_misses]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": [r.to_dict() for r in self.rules],
            "never_fired": self.never_fired,
            "no_near_miss": self.no_near_miss,
            "relations_untouched": self.relations_untouched,
            "tables": [t.to_dict() for t in self.tables],
            "unobserved_rules": self.unobserved_rules,
        }


def coverage(kb: PolicyKB, outcomes: list[CaseOutcome]) -> Coverage:
    """Rules fired and near misses per rule; relations and table rows no case touched.

    A relation is touched when some case's evaluation gave it a row or some proof used it (the
    proofs hold the stored-table rows); run the cases with `proofs=True` to count table rows.
    """
    program = kb.kb.program
    observers = rule_observers(program)
    results = {o.case.id: o.result.to_dict() for o in outcomes if o.result is not None}
    by_id = {r.rule_id: r for r in program.rules if r.rule_id}
    rules = []
    for rid, signs in sorted(observers.items()):
        about = {o.case.id for o in outcomes if rid in o.case.about}
        fired = [cid for cid in results if cid in about and fires(results[cid], signs)]
        quiet = [cid for cid in results if cid in about and not fires(results[cid], signs)]
        elsewhere = [cid for cid in results if cid not in about and fires(results[cid], signs)]
        rules.append(RuleCoverage(rid, str(by_id[rid].loc), fired, quiet, elsewhere))
    touched: set[str] = set()
    rows: dict[str, set[int]] = {}
    for o in outcomes:
        if o.result is None:
            continue
        model = kb.adjudicator.evaluate(parse_claim(o.case.claim))
        touched |= {rel for rel, found in model.relations.items() if found}
        for ln in o.result.lines:
            for reason in ln.reasons:
                touched.add("deny" if reason.severity == "deny" else "warn")
                if reason.overridden_by:
                    touched.add("overridden")
                if reason.proof is not None:
                    _walk(reason.proof.to_dict(), touched, rows)
    store = kb.kb.store
    tables = [
        TableCoverage(rel, store.count(rel), len(rows.get(rel, ())))
        for rel in sorted(program.inputs)
        if rel in program.decls
    ]
    untouched = sorted(set(program.decls) - touched)
    unobserved = sorted(set(by_id) - set(observers))
    return Coverage(rules, untouched, tables, unobserved)


def _walk(node: dict[str, Any], touched: set[str], rows: dict[str, set[int]]) -> None:
    rel = node.get("relation")
    if isinstance(rel, str) and node.get("holds", True):
        touched.add(rel)
        src = node.get("source")
        if node.get("kind") == "table" and isinstance(src, dict) and isinstance(src.get("row"), int):
            rows.setdefault(rel, set()).add(src["row"])
    for child in node.get("children", []):
        _walk(child, touched, rows)


@dataclass
class TestReport:
    """What `policykb test` prints: every case's outcome and, on request, coverage."""

    __test__ = False  # not a pytest class

    kb: str
    outcomes: list[CaseOutcome]
    coverage: Coverage | None = None

    @property
    def failed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if not o.passed]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kb": self.kb,
            "cases": len(self.outcomes),
            "passed": len(self.outcomes) - len(self.failed),
            "failed": len(self.failed),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }
        if self.coverage is not None:
            d["coverage"] = self.coverage.to_dict()
        return d


def run(kb: PolicyKB, root: Path, *, with_coverage: bool = False) -> TestReport:
    """Every case under `root` against `kb`; with coverage, proofs are built to count table rows."""
    outcomes = run_cases(kb, load_cases(root), proofs=with_coverage)
    # a failing case is shown with the proof of what actually happened: re-run it with proofs
    outcomes = [
        run_case(kb, o.case, proofs=True) if not o.passed and not with_coverage and o.error is None else o
        for o in outcomes
    ]
    return TestReport(kb.version, outcomes, coverage(kb, outcomes) if with_coverage else None)
