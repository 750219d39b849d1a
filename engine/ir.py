"""The compiled form of rules: plain data between the compiler and the engine adapter.

Atoms name both the KB relation (for explanations) and the engine predicate that serves it
(for evaluation); bodies are already ordered so every negation and comparison runs bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

Value: TypeAlias = str | int


@dataclass(frozen=True, slots=True)
class IVar:
    name: str


@dataclass(frozen=True, slots=True)
class IConst:
    value: Value


@dataclass(frozen=True, slots=True)
class IOp:
    op: str  # + - * / %
    left: ITerm
    right: ITerm


ITerm: TypeAlias = IVar | IConst | IOp


class RelKind(str, Enum):
    CLAIM = "claim"  # filled from the claim being adjudicated
    FACTS = "facts"  # facts asserted per evaluation (conformance programs)
    STORED = "stored"  # inline KB facts and .input tables, served by keyed lookups
    DYNAMIC = "dynamic"  # derived, depends on the claim: materialised stratum by stratum
    STATIC = "static"  # derived from stored data only: asked on demand with bound values
    AGGREGATE = "aggregate"  # computed from a materialised relation by an aggregate


@dataclass(frozen=True, slots=True)
class IAtom:
    relation: str  # KB relation (or auxiliary relation) name
    engine_name: str  # the pyDatalog predicate that answers it in this position
    args: tuple[ITerm, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class ICompare:
    op: str  # = != < <= > >=
    left: ITerm
    right: ITerm
    assigns: bool = False  # `left` is an unbound variable that this literal binds


@dataclass(frozen=True, slots=True)
class IMatch:
    pattern: ITerm
    value: ITerm
    negated: bool = False


ILiteral: TypeAlias = IAtom | ICompare | IMatch


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int  # position in CompiledProgram.rules
    source_index: int | None  # index into Program.rules of the rule this came from (None: synthesised)
    head: IAtom
    body: tuple[ILiteral, ...]
    aux: str = ""  # why a synthesised rule exists ("negation", "aggregate", "facts")


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    relation: str  # the result relation (group args..., result)
    body_relation: str  # the materialised relation it folds (group args..., inner args...)
    func: str  # sum count min max
    group_arity: int
    target_pos: int | None  # position in body_relation of the summed value (None for count)
