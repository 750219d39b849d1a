"""Parser: golden AST dumps of KB files, and syntax errors reported with what was expected."""

from __future__ import annotations

from conftest import ROOT, check_golden
from engine.syntax import nodes as A
from engine.syntax.parser import parse_file, parse_text


def _dump(module: A.Module) -> str:
    out = []
    for item in module.items:
        loc = f"{item.loc.line}:{item.loc.col}"
        if isinstance(item, A.Rule):
            doc = " ".join(f"@{e.key}" for e in item.doc.entries)
            out.append(f"{loc} rule {item}" + (f"  [{doc}]" if doc else ""))
        elif isinstance(item, A.Fact):
            out.append(f"{loc} fact {item.atom}")
        elif isinstance(item, A.RelDecl):
            out.append(f"{loc} decl {item.name}({', '.join(f'{a.name}: {a.type}' for a in item.attrs)})")
        else:
            out.append(f"{loc} {type(item).__name__} {getattr(item, 'name', '')}")
    return "\n".join(out) + "\n"


def test_injection_policy_parses_to_golden_ast() -> None:
    module, diags = parse_file(ROOT / "kb/policy/injection_96372.dl", "kb/policy/injection_96372.dl")
    assert diags == []
    check_golden(ROOT / "tests/golden/parser/injection_96372.ast.txt", _dump(module))


def test_ncci_edits_parse_to_golden_ast() -> None:
    module, diags = parse_file(ROOT / "kb/ncci/edits.dl", "kb/ncci/edits.dl")
    assert diags == []
    check_golden(ROOT / "tests/golden/parser/edits.ast.txt", _dump(module))


def test_every_syntax_error_in_a_file_is_reported() -> None:
    text = ".decl p(a: number)\nbad(x :- p(x).\nr(x) :- p(x) q(x).\nok(x) :- p(x).\n.decl z(a number)\n"
    module, diags = parse_text(text, "t.dl")
    assert [(d.location.line, d.location.col) for d in diags] == [(2, 7), (3, 14), (5, 11)]
    assert 'expected ")", ","' in diags[0].message
    assert [str(i) for i in module.items if isinstance(i, A.Rule)] == ["ok(x) :- p(x)."]


def test_soufflé_syntax_features() -> None:
    text = ('r(x, y) :- p(x), !q(x), not s(x, _), y = x + 1, (x <= 25), t = sum u : { p(u) }.\n'
            'result(1-2-3) :- seed(x).\nOk() :- not Ok().\nm(c) :- p(c), !match("^9", c).\n')
    module, diags = parse_text(text, "t.dl")
    assert diags == []
    rules = [str(r) for r in module.items]
    assert rules[1] == "result(-4) :- seed(x)."
    assert "sum u" in rules[0] and "!s(x, _)" in rules[0]
    assert rules[3] == 'm(c) :- p(c), !match("^9", c).'


def test_anonymous_variables_are_distinct() -> None:
    module, _ = parse_text("r(x) :- p(x, _, _).\n", "t.dl")
    rule = module.items[0]
    assert isinstance(rule, A.Rule)
    names = [a.name for a in rule.body[0].args if isinstance(a, A.Var)]  # type: ignore[union-attr]
    assert len(set(names)) == 3


def test_doc_comment_annotations_attach_to_the_next_rule() -> None:
    module, _ = parse_text("/**\n * @id a.b\n * @summary one\n *   two\n */\nr(x) :- p(x).\n", "t.dl")
    rule = module.items[0]
    assert isinstance(rule, A.Rule)
    assert rule.rule_id == "a.b"
    assert rule.doc.get("summary") == "one two"
    assert rule.doc.entry("id").loc.line == 2  # type: ignore[union-attr]
