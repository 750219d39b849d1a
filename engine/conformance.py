"""An evaluator for the `datalog-conformance` corpus (Soufflé, Nemo and crepe cases).

The corpus gives rules as text and facts as data, with no declarations: relations are
declared from how they are used (the first use fixes the arity; a different one later is an
arity error) and left untyped, as the corpus programs mix numbers and strings freely. Facts are
asserted per evaluation, like a claim's. Programs go through the same parser, checker passes,
compiler and pyDatalog adapter as the KB.
"""

from __future__ import annotations

from typing import Any

from engine import checks
from engine.compiler import compile_program
from engine.diagnostics import Diagnostic, Location
from engine.evaluate import Evaluator as _Evaluator
from engine.program import Program, program_from_text
from engine.syntax import nodes as A


class ProgramError(Exception):
    """A program the checker rejects; `code` is the conformance corpus' name for the problem."""

    code = "program_error"

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.header())
        self.diagnostic = diagnostic
        self.code = _CODES.get(diagnostic.code, diagnostic.code)


class SafetyViolationError(ProgramError):
    pass


class ArityMismatchError(ProgramError):
    pass


class StratificationError(ProgramError):
    pass


class ParseError(ProgramError):
    pass


_CODES = {
    "arity-mismatch": "arity_mismatch",
    "cyclic-negation": "cyclic_negation",
    "unbound-variable": "unbound_variable",
    "underscore-in-head": "safety_violations",
    "unsafe-negation": "unsafe_negation",
    "unsafe-comparison": "unsafe_comparison",
    "syntax": "syntax_error",
}
_CLASSES: dict[str, type[ProgramError]] = {
    "arity-mismatch": ArityMismatchError,
    "cyclic-negation": StratificationError,
    "unbound-variable": SafetyViolationError,
    "underscore-in-head": SafetyViolationError,
    "unsafe-negation": SafetyViolationError,
    "unsafe-comparison": SafetyViolationError,
    "syntax": ParseError,
}
# Conformance programs are untyped, so the type pass does not apply to them.
_PASSES = [p for name, p in checks.PASSES if name not in ("types", "annotations")]


class Evaluator:
    """`evaluate(program) -> {relation: set of tuples}` for every relation of the program.

    `backend`: "pydatalog" (claim-at-a-time, the default) or "duckdb" (set-at-a-time SQL; the
    corpus programs are untyped, so each column takes the one type its facts give it)."""

    def __init__(self, backend: str = "pydatalog") -> None:
        self.backend = backend

    def evaluate(self, program: Any) -> dict[str, set[tuple]]:
        facts: dict[str, list] = dict(getattr(program, "facts", {}) or {})
        rules: list[str] = list(getattr(program, "rules", []) or [])
        text = "\n".join(r.strip() if r.strip().endswith(".") else r.strip() + "." for r in rules)
        prog = program_from_text({"<rules>": text})
        _declare(prog, facts)
        diags = list(prog.syntax_diagnostics)
        for p in _PASSES:
            diags.extend(p(prog))
        errors = sorted((d for d in diags if d.is_error), key=Diagnostic.sort_key)
        if errors:
            first = errors[0]
            raise _CLASSES.get(first.code, ProgramError)(first)
        compiled = compile_program(prog, facts_are_dynamic=True, dynamic_facts=set(facts))
        if self.backend == "duckdb":
            return _evaluate_duckdb(prog, compiled, facts)
        ev = _Evaluator(compiled)
        try:
            model = ev.evaluate({rel: [tuple(r) for r in rows] for rel, rows in facts.items()})
        finally:
            ev.close()
        out: dict[str, set[tuple]] = {}
        for rel in prog.decls:
            out[rel] = set(model.rows(rel))
        return out


def _evaluate_duckdb(prog: Program, compiled: Any, facts: dict[str, list]) -> dict[str, set[tuple]]:
    from engine.backends.duckdb import DuckDBBackend, value_type

    given: dict[str, list[str | None]] = {}
    for rel, rows in facts.items():
        target = compiled.fact_relations.get(rel, rel)
        cols: list[str | None] = [None] * compiled.arity[target]
        for row in rows:
            for i, v in enumerate(row):
                t = value_type(v)
                if cols[i] not in (None, t):
                    from engine.backends.duckdb import BackendUnsupported

                    raise BackendUnsupported(f"column {i + 1} of {rel} holds both numbers and symbols")
                cols[i] = t
        given[target] = cols
    backend = DuckDBBackend(compiled, None, given)
    try:
        model = backend.evaluate_many(
            [{rel: [tuple(r) for r in rows] for rel, rows in facts.items()}],
            relations=[r for r in compiled.kinds if r in prog.decls],
        )[0]
    finally:
        backend.close()
    return {rel: set(model.rows(rel)) for rel in prog.decls}


def _declare(prog: Program, facts: dict[str, list]) -> None:
    """Declare every relation from its first use; later uses with another arity are errors."""
    loc = Location("<facts>", 0, 0)
    uses: list[tuple[str, int, Location]] = []
    for rel, rows in facts.items():
        for row in rows:
            uses.append((rel, len(row), loc))
    for r in prog.rules:
        for atom, _neg in checks._rule_atoms(r):
            uses.append((atom.pred, len(atom.args), atom.loc))
    for rel, n, where in uses:
        decl = prog.decls.get(rel)
        if decl is None:
            attrs = tuple(A.Attr(f"a{i}", "symbol", where) for i in range(n))
            prog.decls[rel] = A.RelDecl(rel, attrs, A.Doc(), where)
        elif decl.arity != n:
            prog.declaration_diagnostics.append(
                Diagnostic("arity-mismatch", f"{rel} is used with {n} argument(s) but first with {decl.arity}", where)
            )
