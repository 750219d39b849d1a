"""The `@docs` annotation: the checker validates each role with file:line diagnostics, the KB's
roles are all valid, templates drop empty segments, and engine/docs names none of this KB's
relations (the KB says which relation plays which part)."""

from __future__ import annotations

import ast
from pathlib import Path

from engine import checks, docroles
from engine.kb import load_kb
from engine.program import program_from_text

ROOT = Path(__file__).resolve().parents[1]


def _diags(text: str) -> list[str]:
    prog = program_from_text({"t.dl": text})
    return [d.header() for d in checks.run_passes(prog) if "@docs" in d.message]


def test_a_valid_role_gives_no_diagnostic_and_is_returned() -> None:
    text = '/**\n * @summary s\n * @docs code_fact code=c label=MUE text="{n} unit(s)| ({why})"\n */\n.decl m(c: symbol, n: number, why: symbol)\n'
    assert _diags(text) == []
    (role,) = docroles.roles_of(program_from_text({"t.dl": text}).decls)
    assert (role.relation, role.role, role.col("code"), role.text("label")) == ("m", "code_fact", "c", "MUE")


def test_unknown_role_missing_key_and_unknown_column_are_named_with_their_line() -> None:
    text = (
        "/**\n * @summary s\n * @docs code_catalogue code=c\n */\n.decl a(c: symbol)\n"
        "/**\n * @summary s\n * @docs code_fact code=c\n */\n.decl b(c: symbol)\n"
        "/**\n * @summary s\n * @docs code_edit first=c1 second=c3\n */\n.decl e(c1: symbol, c2: symbol)\n"
    )
    out = _diags(text)
    assert any(d.startswith("t.dl:3:") and "unknown role 'code_catalogue'" in d for d in out), out
    assert any(d.startswith("t.dl:8:") and "needs text=, label=" in d for d in out), out
    assert any(d.startswith("t.dl:13:") and "second=c3 is not an attribute of e" in d for d in out), out
    assert all("error[bad-annotation]" in d for d in out)


def test_template_placeholders_and_per_column_keys_must_be_attributes() -> None:
    text = (
        '/**\n * @summary s\n * @docs code_rows code=c heading=H head.colour=Colour short="{status} {size}"\n */\n'
        ".decl r(c: symbol, status: symbol)\n"
    )
    out = _diags(text)
    assert any("head.colour names 'colour'" in d for d in out), out
    assert any("short names {size}" in d for d in out), out


def test_a_single_role_twice_and_a_tag_without_its_reference_page() -> None:
    text = (
        "/**\n * @summary s\n * @docs category code=c category=k\n */\n.decl a(c: symbol, k: symbol)\n"
        "/**\n * @summary s\n * @docs category code=c category=k\n */\n.decl b(c: symbol, k: symbol)\n"
        "/**\n * @summary s\n * @docs tag key=c tag=k page=nowhere title=T\n */\n.decl t(c: symbol, k: symbol)\n"
    )
    out = _diags(text)
    assert any(d.startswith("t.dl:8:") and "a already plays it" in d for d in out), out
    assert any(d.startswith("t.dl:13:") and "page=nowhere is not the page of a reference list" in d for d in out), out
    assert [r.relation for r in docroles.roles_of(program_from_text({"t.dl": text}).decls)] == ["a", "t"]


def test_bad_quoting_and_a_builtin_page_name() -> None:
    text = (
        '/**\n * @summary s\n * @docs reference key=c page=guide title="unclosed\n */\n.decl a(c: symbol)\n'
        "/**\n * @summary s\n * @docs reference key=c page=guide title=T\n */\n.decl b(c: symbol)\n"
    )
    out = _diags(text)
    assert any(d.startswith("t.dl:3:") and "quotation" in d for d in out), out
    assert any(d.startswith("t.dl:8:") and "page=guide must be a new lower-case page name" in d for d in out), out


def test_fill_leaves_out_segments_whose_values_are_empty() -> None:
    t = "status {status}|, facility {facility_na}|, non-facility {non_facility_na}"
    assert docroles.fill(t, {"status": "A", "facility_na": "NA", "non_facility_na": ""}) == "status A, facility NA"
    assert docroles.fill("edit type {t}", {"t": 1}) == "edit type 1"


def test_the_bundled_kb_declares_every_role_the_site_uses_without_a_diagnostic() -> None:
    decls = load_kb(ROOT / "kb").program.decls
    assert docroles.check_roles(decls) == []
    roles = {r.role for r in docroles.roles_of(decls)}
    assert roles == set(docroles.ROLES), f"roles the bundled KB does not exercise: {set(docroles.ROLES) - roles}"


def test_engine_docs_names_no_relation_of_the_kb() -> None:
    """Which relation holds the codes, the edits, the places of service ... is the KB's to say
    (`@docs`); the claim relations and their attributes are the engine's claim format, and
    deny/warn/overridden are the language's. The site (engine/docs) and its command-line and
    HTTP twin (`policykb code`, `/v1/codes`: engine/lookup.py) both read the roles."""
    prog = load_kb(ROOT / "kb").program
    engine_owned = set(prog.claim_relations) | {"deny", "warn", "overridden"}
    engine_owned |= {a.name for rel in prog.claim_relations for a in prog.decls[rel].attrs}
    engine_owned |= set(docroles.DENIAL_ANNOTATIONS)  # rule annotations of the language (@group, @carc, @rarc)
    kb_names = set(prog.decls) - engine_owned
    found = []
    for path in [*sorted((ROOT / "engine" / "docs").glob("*.py")), ROOT / "engine" / "lookup.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # keys of dict literals are the names of output fields (e.g. a partner code), not relations
        keys = {id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys if k is not None}
        for node in ast.walk(tree):
            if id(node) in keys:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in kb_names:
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not found, found
