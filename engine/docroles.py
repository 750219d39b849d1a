"""The `@docs` annotation: which relation plays which part on the reference site.

The site generator knows page *kinds* (a code page, a reference list, the denial codes, the
guidance); the KB says which of its relations fills each kind and which of their columns mean
what, so a KB with other tables gets its pages without a change to the engine. A declaration
carries one role per `@docs` line:

    @docs code_fact code=code label=MUE text="{mue_value} unit(s)| MAI {mai}" short="{mue_value}"

The first word is the role; the rest are `key=value` pairs (shell quoting for values with
spaces). A value is a column (an attribute of the relation), a template (`{attr}` placeholders;
`|` splits it into segments, and a segment whose placeholders are all empty is left out) or
plain text. `check_roles` validates every `@docs` line; `roles_of` returns the valid ones.
docs/language.md lists the roles.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from engine.diagnostics import Diagnostic, Location
from engine.syntax import nodes as A

KEY = "docs"
PLACEHOLDER = re.compile(r"\{(\w+)\}")
PAGE_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
BUILTIN_PAGES = frozenset({"index", "guide", "types", "graph", "examples", "guidance", "denial-codes"})
# the outcome-rule annotations (docs/language.md) whose codes a `denial_code` list gives the text of
GROUP, CARC, RARC = "group", "carc", "rarc"
DENIAL_ANNOTATIONS = (GROUP, CARC, RARC)


@dataclass(frozen=True)
class RoleSpec:
    """What a role accepts: columns, templates, plain texts, and keys with an attribute suffix
    (`head.ATTR=...`)."""

    summary: str
    columns: tuple[str, ...] = ()  # required columns
    optional_columns: tuple[str, ...] = ()
    multi_columns: tuple[str, ...] = ()  # comma-separated column lists (fallbacks, in order)
    templates: tuple[str, ...] = ()  # required templates
    optional_templates: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()  # required plain texts
    optional_texts: tuple[str, ...] = ()
    per_column: tuple[str, ...] = ()  # prefixes of `prefix.ATTR=text` keys
    single: bool = False  # at most one relation in the KB plays it


ROLES: dict[str, RoleSpec] = {
    "code_list": RoleSpec(
        "a list of codes with their descriptions; with pages=all every code in it gets a page",
        columns=("code",),
        optional_columns=("lookup",),
        multi_columns=("description",),
        optional_texts=("label", "note", "pages"),
    ),
    "code_fact": RoleSpec(
        "at most one row per code, shown as a line of the code's page",
        columns=("code",),
        templates=("text",),
        optional_templates=("short",),
        texts=("label",),
        optional_texts=("none",),
    ),
    "code_link": RoleSpec(
        "pairs of codes (code, other), listed on the pages of both",
        columns=("code", "other"),
        texts=("label", "reverse"),
    ),
    "code_rows": RoleSpec(
        "several rows per code, shown as a table in a section of the code's page",
        columns=("code",),
        optional_templates=("short",),
        texts=("heading",),
        optional_texts=("none", "label"),
        per_column=("head", "blank", "where"),
    ),
    "code_edit": RoleSpec(
        "a pair edit between a first and a second code (the code pages list the partners)",
        columns=("first", "second"),
        optional_columns=("deleted", "indicator", "reason"),
        optional_texts=("first_label", "second_label"),
        single=True,
    ),
    "category": RoleSpec("puts a code in a category (a page per category)", columns=("code", "category"), single=True),
    "range": RoleSpec("puts a code in a named range (a page per range)", columns=("code", "name"), single=True),
    "range_bounds": RoleSpec("a named range's bounds", columns=("name", "low", "high"), single=True),
    "reference": RoleSpec(
        "a list of values (places of service, modifiers ...) with its own page",
        columns=("key",),
        optional_columns=("group",),
        texts=("page", "title"),
        optional_texts=("anchor",),
        per_column=("head",),
    ),
    "tag": RoleSpec(
        "tags (roles, groups) of the values of a reference list, shown on its page",
        columns=("key", "tag"),
        texts=("page", "title"),
    ),
    "denial_code": RoleSpec(
        "the texts of the codes an outcome rule's @group, @carc or @rarc names",
        columns=("key", "text"),
        optional_columns=("until",),
        texts=("annotation", "label", "title"),
    ),
    "guidance": RoleSpec(
        "the statements of a guidance document (rules cite them with @guidance)",
        columns=("id", "section", "statement"),
        optional_texts=("title",),
        single=True,
    ),
    "guidance_note": RoleSpec("why a guidance statement cannot be decided from a claim", columns=("id", "reason")),
}


@dataclass(frozen=True)
class DocRole:
    """One valid `@docs` line of a declaration."""

    relation: str
    role: str
    opts: dict[str, str]
    attrs: tuple[str, ...]
    loc: Location
    decl_line: int = 0
    extra: dict[str, dict[str, str]] = field(default_factory=dict)  # prefix -> {attr: text}

    def col(self, key: str) -> str:
        """The column named for `key` ("" when the role leaves it out)."""
        return self.opts.get(key, "")

    def cols(self, key: str) -> list[str]:
        return [c for c in self.opts.get(key, "").split(",") if c]

    def text(self, key: str, default: str = "") -> str:
        return self.opts.get(key, default)


def _split(value: str) -> tuple[str, dict[str, str]]:
    words = shlex.split(value)
    if not words:
        raise ValueError("no role given")
    opts: dict[str, str] = {}
    for w in words[1:]:
        if "=" not in w:
            raise ValueError(f"{w!r} is not key=value")
        k, v = w.split("=", 1)
        if k in opts:
            raise ValueError(f"{k} is given twice")
        opts[k] = " ".join(v.split())
    return words[0], opts


def _parse(decl: A.RelDecl, e: A.Annotation) -> tuple[DocRole | None, list[str]]:
    """The role of one `@docs` line, or the problems with it."""
    try:
        role, opts = _split(e.value)
    except ValueError as exc:
        return None, [f"@docs on {decl.name}: {exc}"]
    spec = ROLES.get(role)
    if spec is None:
        return None, [f"@docs on {decl.name}: unknown role {role!r} (roles: {', '.join(sorted(ROLES))})"]
    attrs = tuple(a.name for a in decl.attrs)
    problems = []
    required = spec.columns + spec.templates + spec.texts
    missing = [k for k in required if not opts.get(k)]
    if missing:
        problems.append(f"@docs {role} on {decl.name} needs {', '.join(k + '=' for k in missing)}")
    known = set(required + spec.optional_columns + spec.multi_columns + spec.optional_templates + spec.optional_texts)
    extra: dict[str, dict[str, str]] = {}
    for k, v in opts.items():
        prefix, _, attr = k.partition(".")
        if attr and prefix in spec.per_column:
            if attr not in attrs:
                problems.append(f"@docs {role} on {decl.name}: {k} names {attr!r}, not an attribute of {decl.name}")
            extra.setdefault(prefix, {})[attr] = v
        elif k not in known:
            problems.append(f"@docs {role} on {decl.name}: unknown key {k!r}")
    for k in spec.columns + spec.optional_columns + spec.multi_columns:
        for c in [c for c in opts.get(k, "").split(",") if c] if k in opts else []:
            if c not in attrs:
                problems.append(f"@docs {role} on {decl.name}: {k}={c} is not an attribute of {decl.name}")
    for k in spec.templates + spec.optional_templates:
        unknown = sorted(set(PLACEHOLDER.findall(opts.get(k, ""))) - set(attrs))
        if unknown:
            problems.append(
                f"@docs {role} on {decl.name}: {k} names {', '.join('{' + u + '}' for u in unknown)}, "
                f"not attributes of {decl.name}"
            )
    if "page" in opts and (not PAGE_RE.match(opts["page"]) or opts["page"] in BUILTIN_PAGES):
        problems.append(f"@docs {role} on {decl.name}: page={opts['page']} must be a new lower-case page name")
    if role == "denial_code" and opts.get("annotation") not in DENIAL_ANNOTATIONS:
        problems.append(f"@docs denial_code on {decl.name}: annotation= must be one of {', '.join(DENIAL_ANNOTATIONS)}")
    if role == "code_list" and opts.get("pages", "all") != "all":
        problems.append(f"@docs code_list on {decl.name}: pages= can only be all")
    if problems:
        return None, problems
    return DocRole(decl.name, role, opts, attrs, e.loc, decl.loc.line, extra), []


def check_roles(decls: dict[str, A.RelDecl]) -> list[Diagnostic]:
    """Every `@docs` line: a known role, its keys, columns that exist, one relation per single role,
    and tags pointing at a reference page."""
    out: list[Diagnostic] = []
    seen: dict[str, DocRole] = {}
    valid: list[DocRole] = []
    for decl in decls.values():
        for e in decl.doc.entries:
            if e.key != KEY:
                continue
            role, problems = _parse(decl, e)
            notes = (f"its attributes: {', '.join(a.name for a in decl.attrs)}; see docs/language.md",)
            out += [Diagnostic("bad-annotation", p, e.loc, notes=notes) for p in problems]
            if role is None:
                continue
            valid.append(role)
            first = seen.get(role.role)
            if ROLES[role.role].single and first is not None:
                out.append(
                    Diagnostic(
                        "bad-annotation",
                        f"@docs {role.role} on {decl.name}: {first.relation} already plays it ({first.loc})",
                        e.loc,
                    )
                )
            seen.setdefault(role.role, role)
    pages = {r.text("page") for r in valid if r.role == "reference"}
    for r in valid:
        if r.role == "tag" and r.text("page") not in pages:
            out.append(
                Diagnostic(
                    "bad-annotation",
                    f"@docs tag on {r.relation}: page={r.text('page')} is not the page of a reference list",
                    r.loc,
                    notes=(f"reference pages: {', '.join(sorted(pages)) or 'none'}",),
                )
            )
    return out


def roles_of(decls: dict[str, A.RelDecl]) -> list[DocRole]:
    """The valid `@docs` roles, in declaration order (file, line); single roles keep their first."""
    out: list[DocRole] = []
    taken: set[str] = set()
    for decl in sorted(decls.values(), key=lambda d: (d.loc.path, d.loc.line)):
        for e in decl.doc.entries:
            if e.key != KEY:
                continue
            role, _problems = _parse(decl, e)
            if role is None or (ROLES[role.role].single and role.role in taken):
                continue
            taken.add(role.role)
            out.append(role)
    return out


def fill(template: str, values: dict[str, object]) -> str:
    """A template with its placeholders replaced; a `|` segment whose placeholders are all empty
    is left out."""
    out = []
    for segment in template.split("|"):
        names = PLACEHOLDER.findall(segment)
        if names and all(str(values.get(n, "")) == "" for n in names):
            continue
        out.append(PLACEHOLDER.sub(lambda mt: str(values.get(mt.group(1), "")), segment))
    return "".join(out)
