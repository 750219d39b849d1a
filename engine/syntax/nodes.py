"""AST of a KB program. Plain frozen data: every node remembers where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.diagnostics import Location

Value = str | int


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    loc: Location
    anonymous: bool = False

    def __str__(self) -> str:
        return "_" if self.anonymous else self.name


@dataclass(frozen=True, slots=True)
class Const:
    value: Value
    loc: Location

    def __str__(self) -> str:
        return render_value(self.value)


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str
    left: Term
    right: Term
    loc: Location

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


Term = Var | Const | BinOp


@dataclass(frozen=True, slots=True)
class Atom:
    pred: str
    args: tuple[Term, ...]
    loc: Location

    def __str__(self) -> str:
        return f"{self.pred}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True, slots=True)
class Negation:
    atom: Atom
    loc: Location

    def __str__(self) -> str:
        return f"!{self.atom}"


@dataclass(frozen=True, slots=True)
class Comparison:
    op: str  # one of = != < <= > >=
    left: Term
    right: Term
    loc: Location

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True, slots=True)
class Match:
    """Soufflé's `match(pattern, value)`: value matches the regular expression pattern."""

    pattern: Term
    value: Term
    loc: Location
    negated: bool = False

    def __str__(self) -> str:
        return f"{'!' if self.negated else ''}match({self.pattern}, {self.value})"


@dataclass(frozen=True, slots=True)
class Aggregate:
    """`result = func target : { body }` (target is None for count)."""

    result: Term
    func: str
    target: Term | None
    body: tuple[Literal, ...]
    loc: Location

    def __str__(self) -> str:
        tgt = f" {self.target}" if self.target is not None else ""
        inner = ", ".join(str(b) for b in self.body)
        return f"{self.result} = {self.func}{tgt} : {{ {inner} }}"


Literal = Atom | Negation | Comparison | Match | Aggregate


@dataclass(frozen=True, slots=True)
class Annotation:
    key: str
    value: str
    loc: Location


@dataclass(frozen=True, slots=True)
class Doc:
    """A doc comment's annotations, in order."""

    entries: tuple[Annotation, ...] = ()

    def get(self, key: str) -> str | None:
        for e in self.entries:
            if e.key == key:
                return e.value
        return None

    def entry(self, key: str) -> Annotation | None:
        for e in self.entries:
            if e.key == key:
                return e
        return None


@dataclass(frozen=True, slots=True)
class Attr:
    name: str
    type: str
    loc: Location


@dataclass(frozen=True, slots=True)
class TypeDecl:
    name: str
    base: str
    doc: Doc
    loc: Location


@dataclass(frozen=True, slots=True)
class RelDecl:
    name: str
    attrs: tuple[Attr, ...]
    doc: Doc
    loc: Location

    @property
    def arity(self) -> int:
        return len(self.attrs)


@dataclass(frozen=True, slots=True)
class InputDecl:
    name: str
    options: tuple[tuple[str, Value], ...]
    loc: Location

    def option(self, key: str) -> Value | None:
        for k, v in self.options:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True)
class ClaimDecl:
    name: str
    loc: Location


@dataclass(frozen=True, slots=True)
class OutputDecl:
    name: str
    loc: Location


@dataclass(frozen=True, slots=True)
class Fact:
    atom: Atom
    loc: Location


@dataclass(frozen=True, slots=True)
class Rule:
    head: Atom
    body: tuple[Literal, ...]
    doc: Doc
    loc: Location
    text: str = ""  # the rule as written, for docs and explanations

    @property
    def rule_id(self) -> str | None:
        return self.doc.get("id")

    def __str__(self) -> str:
        return f"{self.head} :- {', '.join(str(b) for b in self.body)}."


Item = TypeDecl | RelDecl | InputDecl | ClaimDecl | OutputDecl | Fact | Rule


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed source file."""

    path: str
    items: tuple[Item, ...]
    lines: tuple[str, ...] = field(default=(), repr=False)


def render_value(v: Value) -> str:
    """Values as Datalog text: strings quoted, numbers bare."""
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def term_vars(t: Term) -> list[Var]:
    if isinstance(t, Var):
        return [t]
    if isinstance(t, BinOp):
        return term_vars(t.left) + term_vars(t.right)
    return []


def literal_vars(lit: Literal) -> list[Var]:
    """Variables a literal mentions (for an aggregate: only its result and group variables are
    visible outside; callers that need the inner ones walk the body)."""
    if isinstance(lit, Atom):
        return [v for a in lit.args for v in term_vars(a)]
    if isinstance(lit, Negation):
        return literal_vars(lit.atom)
    if isinstance(lit, (Comparison,)):
        return term_vars(lit.left) + term_vars(lit.right)
    if isinstance(lit, Match):
        return term_vars(lit.pattern) + term_vars(lit.value)
    if isinstance(lit, Aggregate):
        inner = [v for b in lit.body for v in literal_vars(b)]
        if lit.target is not None:
            inner += term_vars(lit.target)
        return term_vars(lit.result) + inner
    raise TypeError(lit)
