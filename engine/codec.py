"""The compiled KB and the parsed modules as plain JSON data, for the on-disk caches.

Decoding builds only the engine's own frozen data classes (named in `_CLASSES`) from lists,
strings and numbers: nothing in a cache file can name a type, call a function or import a
module, so a file written by someone else can at worst be wrong data, which the reader
rejects as a cache miss.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from engine import compiler, ir
from engine.diagnostics import Diagnostic, Location, Severity
from engine.syntax import nodes as A

_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        compiler.CompiledProgram,
        ir.IVar,
        ir.IConst,
        ir.IOp,
        ir.IAtom,
        ir.ICompare,
        ir.IMatch,
        ir.CompiledRule,
        ir.AggregateSpec,
        Diagnostic,
        Location,
        A.Var,
        A.Const,
        A.BinOp,
        A.Atom,
        A.Negation,
        A.Comparison,
        A.Match,
        A.Aggregate,
        # the parsed modules (engine.syntax.cache)
        A.Annotation,
        A.Doc,
        A.Attr,
        A.TypeDecl,
        A.RelDecl,
        A.InputDecl,
        A.ClaimDecl,
        A.OutputDecl,
        A.Fact,
        A.Rule,
        A.Module,
    )
}
_ENUMS: dict[str, type[enum.Enum]] = {cls.__name__: cls for cls in (ir.RelKind, Severity)}


class DecodeError(ValueError):
    """The data is not something `encode` writes."""


def encode(obj: Any) -> Any:
    """JSON-ready data: every container and object tagged so `decode` rebuilds it exactly."""
    if isinstance(obj, enum.Enum):  # first: RelKind and Severity are also strings
        name = type(obj).__name__
        if _ENUMS.get(name) is not type(obj):
            raise TypeError(f"{name} is not part of the compiled program")
        return {"enum": name, "value": obj.value}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = type(obj).__name__
        if _CLASSES.get(name) is not type(obj):
            raise TypeError(f"{name} is not part of the compiled program")
        return {"class": name, "fields": {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, list):
        return [encode(x) for x in obj]
    if isinstance(obj, tuple):
        return {"tuple": [encode(x) for x in obj]}
    if isinstance(obj, (set, frozenset)):
        return {"set": sorted((encode(x) for x in obj), key=repr)}
    if isinstance(obj, dict):
        return {"dict": [[encode(k), encode(v)] for k, v in obj.items()]}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def decode(data: Any) -> Any:
    """The inverse of `encode`; DecodeError for anything `encode` would not have written.
    (Data comes from json.loads: exact types, classes first as they are the most common.)"""
    t = type(data)
    if t is str or t is int or t is bool or data is None:
        return data
    if t is list:
        return [decode(x) for x in data]
    if t is not dict or len(data) not in (1, 2):
        raise DecodeError(f"unexpected {t.__name__} in the cached data")
    try:
        if "class" in data:
            cls = _CLASSES[data["class"]]
            return cls(**{str(k): decode(v) for k, v in data["fields"].items()})
        if "tuple" in data:
            return tuple([decode(x) for x in data["tuple"]])
        if "set" in data:
            return {decode(x) for x in data["set"]}
        if "dict" in data:
            return {decode(k): decode(v) for k, v in data["dict"]}
        if "enum" in data:
            return _ENUMS[data["enum"]](data["value"])
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DecodeError(f"malformed cached data: {exc!r}") from None
    raise DecodeError(f"unexpected object with keys {sorted(data)}")
