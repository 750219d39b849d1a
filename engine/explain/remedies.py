"""Remedies: the smallest claim changes that make a denied line pay, where the policy allows.

The KB says which changes a rule admits (`@remedy` on the rule: add-modifier, set-units,
replace-code, replace-modifier); nothing here knows billing policy. Each candidate is applied to
a copy of the claim and adjudicated again (by engine/explain/rejudge.py: only the encounter the
change touches, and only what the change can reach, the rest read from the claim's decision, see
engine/explain/encounter.py; the answer is the whole claim's). A change is offered as a remedy
only when, after it,

- the line pays (no rule of the KB denies it: a remedy never advises what the KB would deny),
- no other line is denied by a rule that did not deny it before (fixing one line must not
  break another), and
- it bills no code of higher value than the service documented: a code is only ever replaced
  by the one the rule's `@remedy` names, and never by an E/M code of a more intensive level
  (or by an E/M code at all when the line was not an E/M service).

Other candidates are listed as blocked, with the rules that would deny (and on which line).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TypeVar

from engine.claims import Claim, Line

Adjudicate = Callable[[Claim], dict[int, set[str]]]  # claim -> line -> rule ids denying it (in force)
IsEM = Callable[[str], bool]
_T = TypeVar("_T")

MAX_CANDIDATES = 40


VERBS = {"add-modifier": "MODIFIER ...", "set-units": "N", "replace-code": "CODE", "replace-modifier": "OLD NEW"}
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RemedySpecError(ValueError):
    """A `@remedy` annotation that does not follow the grammar."""


@dataclasses.dataclass(frozen=True)
class RemedySpec:
    """One parsed `@remedy`: the verb and its arguments (which may be `{var}` placeholders).

    Grammar: `add-modifier MOD...` | `set-units N` | `replace-code CODE` | `replace-modifier OLD NEW`.
    """

    verb: str
    args: tuple[str, ...]


def parse_spec(spec: str) -> RemedySpec:
    """Parse one `@remedy` annotation (placeholders left as written); RemedySpecError if malformed."""
    words = spec.split()
    if not words:
        raise RemedySpecError("empty @remedy")
    verb, args = words[0], tuple(words[1:])
    if verb not in VERBS:
        raise RemedySpecError(f"unknown remedy {verb!r} (one of {', '.join(VERBS)})")
    need = {"set-units": 1, "replace-code": 1, "replace-modifier": 2}.get(verb)
    if (need is None and not args) or (need is not None and len(args) != need):
        raise RemedySpecError(f"{verb} takes {VERBS[verb]}")
    if verb == "set-units" and not (args[0].isdigit() or PLACEHOLDER.fullmatch(args[0])):
        raise RemedySpecError(f"set-units takes a whole number or a {{variable}}, not {args[0]!r}")
    return RemedySpec(verb, args)


def candidates(
    spec: str, line: Line, bindings: dict[str, object], partner_lines: list[int]
) -> list[tuple[str, dict, Callable[[Claim], Claim]]]:
    """Parse one `@remedy` annotation into (description, action, claim transform) candidates."""
    text = PLACEHOLDER.sub(lambda m: str(bindings.get(m.group(1), m.group(0))), spec)
    try:
        parsed = parse_spec(text)
    except RemedySpecError:
        return []  # `policykb check` warns about it (engine/lint.py)
    verb, args = parsed.verb, parsed.args
    out: list[tuple[str, dict, Callable[[Claim], Claim]]] = []
    if verb == "add-modifier":
        for target in [line.line, *partner_lines]:
            for mod in args:
                out.append(
                    (
                        f"add modifier {mod} to line {target}",
                        {"add_modifier": mod, "line": target},
                        _add_modifier(target, mod),
                    )
                )
    elif verb == "set-units" and args[0].isdigit():
        units = int(args[0])
        if 0 < units < line.units:
            out.append(
                (
                    f"report {units} unit(s) on line {line.line} instead of {line.units}",
                    {"set_units": units, "line": line.line},
                    _set_units(line.line, units),
                )
            )
    elif verb == "replace-code":
        out.append(
            (
                f"bill line {line.line} as {args[0]} instead of {line.code}",
                {"replace_code": args[0], "line": line.line},
                _replace_code(line.line, args[0]),
            )
        )
    elif verb == "replace-modifier":
        out.append(
            (
                f"replace modifier {args[0]} with {args[1]} on line {line.line}",
                {"replace_modifier": args[0], "with": args[1], "line": line.line},
                _replace_modifier(line.line, args[0], args[1]),
            )
        )
    return out


_INIT_FIELDS: dict[type, tuple[str, ...]] = {}


def _replace(obj: _T, **changes: object) -> _T:
    """`dataclasses.replace` for the claim's own dataclasses, with each class's fields looked up
    once (a remedy search copies a claim and a line for every candidate)."""
    cls = obj.__class__
    names = _INIT_FIELDS.get(cls)
    if names is None:
        names = _INIT_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(obj) if f.init)  # type: ignore[arg-type]
    return cls(**{name: changes[name] if name in changes else getattr(obj, name) for name in names})


def _map_line(claim: Claim, number: int, fn: Callable[[Line], Line]) -> Claim:
    return _replace(claim, lines=tuple([fn(ln) if ln.line == number else ln for ln in claim.lines]))


def _add_modifier(number: int, mod: str) -> Callable[[Claim], Claim]:
    def apply(claim: Claim) -> Claim:
        return _map_line(
            claim,
            number,
            lambda ln: (
                ln if mod in ln.modifiers or len(ln.modifiers) >= 4 else _replace(ln, modifiers=ln.modifiers + (mod,))
            ),
        )

    return apply


def _set_units(number: int, units: int) -> Callable[[Claim], Claim]:
    return lambda claim: _map_line(claim, number, lambda ln: _replace(ln, units=units))


def _replace_code(number: int, code: str) -> Callable[[Claim], Claim]:
    return lambda claim: _map_line(claim, number, lambda ln: _replace(ln, code=code))


def _replace_modifier(number: int, old: str, new: str) -> Callable[[Claim], Claim]:
    def fix(ln: Line) -> Line:
        mods = tuple(new if m == old else m for m in ln.modifiers)
        return _replace(ln, modifiers=tuple(dict.fromkeys(mods)))

    return lambda claim: _map_line(claim, number, fix)


def higher_value(old: str, new: str, is_em: IsEM) -> bool:
    """True when billing `new` instead of `old` would claim a more valuable service than the
    one documented: an E/M code replacing a non-E/M service, or a higher E/M level in the same
    E/M family (same first four characters, e.g. 99213 -> 99214)."""
    if not is_em(new):
        return False
    if not is_em(old):
        return True
    return old[:4] == new[:4] and new > old


def find(
    claim: Claim,
    line: Line,
    rule_id: str,
    specs: list[str],
    bindings: dict[str, object],
    partner_lines: list[int],
    adjudicate: Adjudicate,
    before: dict[int, set[str]] | None = None,
    is_em: IsEM = lambda _code: False,
) -> tuple[list[dict], list[dict]]:
    """(remedies, blocked): the changes after which the line pays and nothing else newly denies,
    and the ones that do not, each blocked one with the rules that deny it then (`rule_id`
    itself when the change does not get past this edit, e.g. a modifier against indicator 0)."""
    before = before if before is not None else adjudicate(claim)
    remedies: list[dict] = []
    blocked: list[dict] = []
    seen: set[str] = set()
    cands = [c for spec in specs for c in candidates(spec, line, bindings, partner_lines)][:MAX_CANDIDATES]
    for desc, action, transform in cands:
        if desc in seen:
            continue
        seen.add(desc)
        new_code = action.get("replace_code")
        if isinstance(new_code, str) and higher_value(line.code, new_code, is_em):
            blocked.append(
                {
                    "change": desc,
                    "action": action,
                    "blocked_by": [],
                    "why": f"{new_code} would bill a more valuable service than the {line.code} documented",
                }
            )
            continue
        changed = transform(claim)
        if changed == claim:
            continue
        after = adjudicate(changed)
        denials = after.get(line.line, set())
        broken = {n: sorted(rules - before.get(n, set())) for n, rules in after.items() if n != line.line}
        broken = {n: rules for n, rules in broken.items() if rules}
        if denials:
            blocked.append({"change": desc, "action": action, "blocked_by": sorted(denials)})
        elif broken:
            blocked.append(
                {
                    "change": desc,
                    "action": action,
                    "blocked_by": sorted({r for rules in broken.values() for r in rules}),
                    "why": "; ".join(
                        f"line {n} would then be denied by {', '.join(rules)}" for n, rules in sorted(broken.items())
                    ),
                }
            )
        else:
            remedies.append({"change": desc, "action": action})
    return remedies, blocked
