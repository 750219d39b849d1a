"""The adjudication result: plain data, rendered elsewhere (text, JSON, Markdown).

A denied line has one *primary* reason (the in-force denial with the lowest `@precedence`,
ties by rule id) and may have *supporting* ones; a finding set aside by a higher-precedence
rule is *overridden*; a warning on a line is a *warning*. `remedies` is None when remedies
were not searched for (scrub, --no-remedies, a reason that does not deny), and a list
(possibly empty: nothing the policy allows would fix it) when they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.explain.proof import ProofNode

ROLES = ("primary", "supporting", "warning", "overridden")


@dataclass
class Reason:
    rule: str
    title: str
    kind: str
    severity: str
    group: str
    carc: str
    rarc: list[str]
    message: str
    sources: list[str]
    proof: ProofNode | None = None
    remedies: list[dict[str, object]] | None = None
    blocked_options: list[dict[str, object]] = field(default_factory=list)
    overridden_by: str | None = None
    bindings: dict[str, object] = field(default_factory=dict)
    precedence: int | None = None
    role: str = "supporting"
    because: list[str] | None = None  # None when no proof was built (scrub without --proofs)
    guidance: list[str] = field(default_factory=list)
    citations: list[dict[str, object]] = field(default_factory=list)
    remedy_condition: str | None = None

    @property
    def in_force(self) -> bool:
        return self.overridden_by is None

    @property
    def remittance_key(self) -> tuple[str, str, tuple[str, ...]]:
        """What the remittance advice carries for this reason: group, CARC and the RARC set."""
        return (self.group, self.carc, tuple(sorted(set(self.rarc))))

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "rule": self.rule,
            "role": self.role,
            "title": self.title,
            "kind": self.kind,
            "severity": self.severity,
            "group": self.group,
            "carc": self.carc,
            "rarc": self.rarc,
            "message": self.message,
            "because": self.because,
            "sources": self.sources,
            "citations": self.citations,
            "guidance": self.guidance,
            "proof": self.proof.to_dict() if self.proof else {},
            "remedies": self.remedies,
        }
        if self.precedence is not None:
            d["precedence"] = self.precedence
        if self.blocked_options:
            d["blocked_options"] = self.blocked_options
        if self.overridden_by:
            d["overridden_by"] = self.overridden_by
        return d


def precedence_key(r: Reason) -> tuple[bool, int, str]:
    """Lowest @precedence first; rules without one after all that have it; ties by rule id."""
    return (r.precedence is None, r.precedence or 0, r.rule)


def assign_roles(reasons: list[Reason]) -> tuple[str | None, list[Reason]]:
    """The line's primary rule id (None when no denial is in force) and its reasons in reading
    order: primary, supporting denials by precedence, warnings, then overridden findings."""
    denials = sorted((r for r in reasons if r.severity == "deny" and r.in_force), key=precedence_key)
    warnings = sorted((r for r in reasons if r.severity != "deny" and r.in_force), key=precedence_key)
    overridden = sorted((r for r in reasons if not r.in_force), key=precedence_key)
    for i, r in enumerate(denials):
        r.role = "primary" if i == 0 else "supporting"
    for r in warnings:
        r.role = "warning"
    for r in overridden:
        r.role = "overridden"
    return (denials[0].rule if denials else None), [*denials, *warnings, *overridden]


@dataclass
class LineResult:
    line: int
    code: str
    decision: str  # deny | pay
    reasons: list[Reason] = field(default_factory=list)
    primary: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "line": self.line,
            "code": self.code,
            "decision": self.decision,
            "primary": self.primary,
            "reasons": [r.to_dict() for r in self.reasons],
        }

    @property
    def primary_reason(self) -> Reason | None:
        return next((r for r in self.reasons if r.role == "primary"), None)


@dataclass
class ClaimResult:
    claim: str
    kb: str
    lines: list[LineResult]

    def to_dict(self) -> dict[str, object]:
        return {"claim": self.claim, "kb": self.kb, "lines": [ln.to_dict() for ln in self.lines]}

    def line(self, number: int) -> LineResult | None:
        return next((ln for ln in self.lines if ln.line == number), None)
