"""The adjudication result: plain data, rendered elsewhere (text, JSON, Markdown)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.explain.proof import ProofNode


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
    remedies: list[dict[str, object]] = field(default_factory=list)
    blocked_options: list[dict[str, object]] = field(default_factory=list)
    overridden_by: str | None = None
    bindings: dict[str, object] = field(default_factory=dict)

    @property
    def in_force(self) -> bool:
        return self.overridden_by is None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "rule": self.rule, "title": self.title, "kind": self.kind, "severity": self.severity,
            "group": self.group, "carc": self.carc, "rarc": self.rarc, "message": self.message,
            "sources": self.sources, "proof": self.proof.to_dict() if self.proof else {},
            "remedies": self.remedies,
        }
        if self.blocked_options:
            d["blocked_options"] = self.blocked_options
        if self.overridden_by:
            d["overridden_by"] = self.overridden_by
        return d


@dataclass
class LineResult:
    line: int
    code: str
    decision: str  # deny | pay
    reasons: list[Reason] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "code": self.code, "decision": self.decision,
                "reasons": [r.to_dict() for r in self.reasons]}


@dataclass
class ClaimResult:
    claim: str
    kb: str
    lines: list[LineResult]

    def to_dict(self) -> dict[str, object]:
        return {"claim": self.claim, "kb": self.kb, "lines": [ln.to_dict() for ln in self.lines]}

    def line(self, number: int) -> LineResult | None:
        return next((ln for ln in self.lines if ln.line == number), None)
