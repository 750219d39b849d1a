"""Markdown for every page of the site, from a DocsModel. Rendering only: no KB access here.

Links between pages are relative `.md` links (mkdocs checks them in --strict builds); inside
raw HTML (tables, diagrams, proofs) they are relative `.html` links, which is why the site is
built with `use_directory_urls: false`.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable
from html import escape

import networkx as nx
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from engine.docroles import CARC, GROUP, RARC, DocRole, fill
from engine.docs import graph as G
from engine.docs.model import (
    Case,
    CodeDoc,
    DocsModel,
    RelationDoc,
    RuleDoc,
    Src,
    lookup_fields,
    polarity,
)
from engine.docs.proofs import render_proof
from engine.docs.reading import Linker, read_rule
from engine.docs.scenarios import GuideScenarios
from engine.syntax import nodes as A

ORIGIN_TEXT = {
    "claim": "claim relation: filled from the claim being adjudicated",
    "table": "table: loaded from a CSV file",
    "facts": "facts: listed in the KB",
    "derived": "derived: computed by rules",
    "outcome": "outcome: what the adjudication reports",
}
ORIGIN_ORDER = ["outcome", "derived", "facts", "table", "claim"]
FACTS_SHOWN = 200
SAMPLE_ROWS = 5


def md_href(frm: str, to: str, anchor: str = "") -> str:
    rel = posixpath.relpath(to, posixpath.dirname(frm) or ".")
    return rel + (f"#{anchor}" if anchor else "")


def html_href(frm: str, to: str, anchor: str = "") -> str:
    return md_href(frm, re.sub(r"\.md$", ".html", to), anchor)


def esc(text: object) -> str:
    """Text for Markdown inline content (table cells included)."""
    s = escape(str(text), quote=False)
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", s).replace("\n", " ")


def anchor_id(prefix: str, value: object) -> str:
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]", "-", str(value))


def where(src: Src | None) -> str:
    return f"`{src}`" if src else ""


# Markdown templates (engine/docs/templates): values are escaped for Markdown by the `esc` filter
# where they are text, so HTML autoescaping is for .html templates only.
TEMPLATES = Environment(
    loader=PackageLoader("engine.docs", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(esc=esc, where=where)


class Site:
    """Renders every page; `pages()` returns {path under site/: Markdown}."""

    def __init__(self, model: DocsModel, scenarios: list[Case], guide_text: GuideScenarios | None = None):
        self.m = model
        self.scenarios = scenarios
        self.guide_text = guide_text or GuideScenarios()
        self.rule_ids = {r.id: r for r in model.rules if r.id}
        self.cases_by_rule: dict[str, list[Case]] = defaultdict(list)
        for case in model.cases:
            for rid in case.about:
                self.cases_by_rule[rid].append(case)
        self.decls = {k: v.decl for k, v in model.relations.items()}
        self.graph = self.diagram_graph()
        # reference lists (`@docs reference`): the values each lists, and the tags of its page
        self.references = model.roles_named("reference")
        self.ref_values = {
            r.relation: {str(row.get(r.col("key"))) for _s, row in model.references.get(r.relation, [])}
            for r in self.references
        }
        self.tag_roles = model.roles_named("tag")
        self.tag_values = {
            t.relation: {tag for tags in model.tags.get(t.relation, {}).values() for _s, tag in tags}
            for t in self.tag_roles
        }
        self.category_role = model.role("category")
        self.range_role = model.role("range")
        self.bounds_role = model.role("range_bounds")

    # --- links -----------------------------------------------------------------------

    def linker(self, page: str) -> Linker:
        def relation(name: str) -> str:
            if name in self.m.relations:
                return f"[{name}]({md_href(page, self.m.relations[name].page)})"
            return f"`{name}`"

        def constant(rel: str, attr: str, value: A.Value) -> str:
            target = self.constant_target(rel, attr, value)
            text = esc(value) if value != "" else '""'
            return f"[{text}]({md_href(page, *target)})" if target else f"`{A.render_value(value)}`"

        return Linker(relation, constant)

    def constant_target(self, rel: str, attr: str, value: A.Value) -> tuple[str, str] | None:
        """The page (and anchor) a constant in this argument position names, if any."""
        if not isinstance(value, str) or value == "":
            return None
        decl = self.m.relations.get(rel)
        atype = next((a.type for a in decl.decl.attrs if a.name == attr), "") if decl else ""
        if attr in ("rule", "by_rule") and value in self.rule_ids:
            return self.rule_ids[value].page, ""
        if value in self.m.codes and (atype == "Code" or attr.endswith("code") or attr in ("c", "code")):
            return self.m.codes[value].page, ""
        range_names = {(r.relation, r.col("name")) for r in (self.range_role, self.bounds_role) if r}
        if (rel, attr) in range_names and value in self.m.ranges:
            return f"codes/range/{value}.md", ""
        cat = self.category_role
        if cat and (rel, attr) == (cat.relation, cat.col("category")) and value in self.m.categories:
            return f"codes/category/{value}.md", ""
        for r in self.references:
            if r.col("group") and (rel, attr) == (r.relation, r.col("group")):
                return f"{r.text('page')}.md", anchor_id(r.col("group"), value)
        for t in self.tag_roles:
            if (rel, attr) == (t.relation, t.col("tag")) and value in self.tag_values[t.relation]:
                return f"{t.text('page')}.md", anchor_id(t.col("tag"), value)
        for r in self.references:
            if self._names_reference(r, atype, attr) and value in self.ref_values[r.relation]:
                return f"{r.text('page')}.md", anchor_id(self._anchor(r), value)
        if value in self.m.codes:
            return self.m.codes[value].page, ""
        return None

    def _names_reference(self, r: DocRole, atype: str, attr: str) -> bool:
        """An argument names a value of the reference list when it has the list's own (domain)
        type, or the list's key column name."""
        key_type = next((a.type for a in self.decls[r.relation].attrs if a.name == r.col("key")), "symbol")
        return attr == r.col("key") or (key_type not in ("symbol", "number") and atype == key_type)

    @staticmethod
    def _anchor(r: DocRole) -> str:
        return r.text("anchor") or r.text("page")

    def rule_link(self, page: str, r: RuleDoc, text: str | None = None) -> str:
        label = text or (r.id if r.id else f"{r.head} (rule at {r.src})")
        return f"[{esc(label)}]({md_href(page, r.page, r.anchor)})"

    def rel_link(self, page: str, name: str) -> str:
        rel = self.m.relations.get(name)
        return f"[{esc(name)}]({md_href(page, rel.page)})" if rel else f"`{name}`"

    def code_link(self, page: str, code: str) -> str:
        if code in self.m.codes:
            return f"[{code}]({md_href(page, self.m.codes[code].page)})"
        if not re.fullmatch(self.m.code_pattern, code):
            return esc(code)
        # inline HTML: the lookup's #CODE fragment is read by its script, not an anchor mkdocs knows
        return f'<a href="{escape(html_href(page, "codes/lookup.md", code))}">{escape(code)}</a>'

    def code_href_html(self, page: str, code: str) -> str:
        if code in self.m.codes:
            return html_href(page, self.m.codes[code].page)
        return html_href(page, "codes/lookup.md", code)

    # --- all pages ---------------------------------------------------------------------

    def pages(self) -> dict[str, str]:
        out: dict[str, str] = {
            "index.md": self.home(),
            "guide.md": self.guide(),
            "rules/index.md": self.rules_index(),
            "relations/index.md": self.relations_index(),
            "types.md": self.types_page(),
            "codes/index.md": self.codes_index(),
            "codes/lookup.md": self.lookup_page(),
            "graph.md": self.graph_page(),
            "examples.md": self.examples_page(),
        }
        out["denial-codes.md"] = self.denial_codes_page()  # outcome rules always carry @group and @carc
        out["guidance.md"] = self.guidance_page()  # and may cite statements with @guidance
        for page in dict.fromkeys(r.text("page") for r in self.references):
            out[f"{page}.md"] = self.reference_page(page)
        for r in self.m.id_rules:
            out[r.page] = self.rule_page(r)
        for rel in self.m.relations.values():
            out[rel.page] = self.relation_page(rel)
        for code in self.m.codes.values():
            out[code.page] = self.code_page(code)
        for cat in self.m.categories:
            out[f"codes/category/{cat}.md"] = self.category_page(cat)
        for name in self.m.ranges:
            out[f"codes/range/{name}.md"] = self.range_page(name)
        return {k: v.rstrip("\n") + "\n" for k, v in sorted(out.items())}

    # --- home ----------------------------------------------------------------------------

    def home(self) -> str:
        p = "index.md"
        m = self.m
        kinds = defaultdict(list)
        for r in m.outcome_rules:
            kinds[r.ann("kind")].append(r)
        lines = [
            "# PolicyKB reference",
            "",
            "Medical-billing policy kept as Datalog rules, published the way coders look codes up: one",
            "page per rule, per code the rules name, per relation, with the places of service, modifiers",
            "and denial codes they use. Every page is generated from the KB when the site is built",
            "(`mkdocs build`); none is written by hand, so the pages say exactly what the rules do.",
            "",
            (
                f"KB version `{m.version}`: {len(m.outcome_rules)} outcome rules, {len(m.rules)} rules in all, "
                f"{len(m.relations)} relations, {len(m.codes)} code pages, {len(m.cases)} policy test cases."
            ),
            "",
            "## Start here",
            "",
            f"- A line was denied and you have the remittance codes: [Why does my line deny?]({md_href(p, 'guide.md')})",
            (
                f"- A code: [codes by category]({md_href(p, 'codes/index.md')}), or any code of the KB's tables in the "
                f"[code lookup]({md_href(p, 'codes/lookup.md')})"
            ),
            (
                f"- The rules: [all rules]({md_href(p, 'rules/index.md')}), "
                f"[how they depend on each other]({md_href(p, 'graph.md')}), "
                f"[worked examples]({md_href(p, 'examples.md')})"
            ),
            *(
                [
                    f"- The guidance, statement by statement, with the rule for each: [guidance]({md_href(p, 'guidance.md')})"
                ]
                if m.guidance
                else []
            ),
            "- " + ", ".join(self._reference_links(p)),
            "",
            "## What the KB covers",
            "",
            "| Kind of rule | Rules |",
            "| --- | --- |",
        ]
        for kind in sorted(kinds):
            lines.append(f"| {esc(kind)} | " + ", ".join(self.rule_link(p, r) for r in kinds[kind]) + " |")
        lines += [
            "",
            "## Data and its vintage",
            "",
            "The reference tables the rules read, with what the KB file that declares each says about it.",
            "",
            "| Relation | File | Rows | About the data |",
            "| --- | --- | ---: | --- |",
        ]
        for rel in sorted((r for r in m.relations.values() if r.origin == "table"), key=lambda r: r.name):
            about = m.modules.get(rel.src.path, "")
            lines.append(f"| {self.rel_link(p, rel.name)} | `{rel.table}` | {rel.rows:,} | {esc(_vintage(about))} |")
        example = self.rule_ids.get(self.guide_text.example_rule) or (m.outcome_rules[0] if m.outcome_rules else None)
        lines += [
            "",
            "## How to read a rule",
            "",
            "A rule says when a line is denied (or warned about): the line is denied when **every**",
            "condition of the rule's body holds for some choice of the rule's variables. Variables are",
            "lower-case names (`l`, `p`); `_` stands for any value; `!` means the condition must **not**",
            "hold. Each rule page shows the rule as written, reads each condition in plain words, cites",
            "its sources, gives the group code, CARC and RARC the denial carries, and shows the policy",
            "test cases that exercise it with their proofs.",
        ]
        if example is not None:
            head, readings = read_rule(example.rule, self.decls, self.linker(p))
            lines += [
                "",
                f"For example, {self.rule_link(p, example)} ({esc(example.title)}):",
                "",
                "```prolog",
                rule_text(example.rule),
                "```",
                "",
                head,
                "",
            ]
            lines += [f"{i}. {rd.text}" for i, rd in enumerate(readings, 1)]
        lines += [
            "",
            "Source references look like `kb/ncci/edits.dl:45` (a KB file and line) or",
            "`kb/tables/pos.csv row 22` (a table's data row, counting from 1 after the header).",
            "",
            "## Building this site",
            "",
            "```sh",
            "mkdocs build --strict                               # the pages from kb/, HTML into build/html",
            "POLICYKB_DOCS_KB=/path/to/kb mkdocs build --strict  # the same for another KB",
            "mkdocs serve                                        # browse it",
            "policykb docs --out DIR                             # the generated Markdown, to read",
            "```",
        ]
        return "\n".join(lines)

    def _reference_links(self, p: str) -> list[str]:
        """Links to the reference-list pages and the denial codes, for the home page."""
        pages = dict.fromkeys(r.text("page") for r in self.references)
        out = []
        for i, page in enumerate(pages):
            title = next(r.text("title") for r in self.references if r.text("page") == page)
            out.append(f"[{esc(title if i == 0 else title[:1].lower() + title[1:])}]({md_href(p, page + '.md')})")
        out.append(f"[{'denial codes' if out else 'Denial codes'}]({md_href(p, 'denial-codes.md')})")
        return out

    # --- guide ---------------------------------------------------------------------------

    def guide(self) -> str:
        p = "guide.md"
        m = self.m
        lines = [
            "# Why does my line deny?",
            "",
            "Start from the remittance advice (the 835, or the EOB): for the denied line it gives a",
            "**group code** (CO, OA, PR ...), a **claim adjustment reason code** (CARC) and often one or",
            "more **remark codes** (RARC). Every denial PolicyKB produces carries all three, and each",
            "combination leads to few rules.",
            "",
            "1. Find the group code and CARC of the line in the table below; the RARC narrows the choice.",
            "2. Open the rule. Its page lists the conditions that must all hold for the denial, in plain",
            "   words, and the sources they come from.",
            "3. Check each condition against your claim: the codes on the other lines, the place of",
            "   service, the modifiers, the units. The code, place-of-service and modifier pages say what",
            "   the KB knows about each value.",
            "4. The worked examples on the rule page show claims the rule denies and the proof of each",
            "   denial, condition by condition.",
            "5. If the rule gives a remedy (a modifier to add, units to lower, a code to bill instead) it",
            "   is on the rule page; a remedy is only right when the record supports it.",
            "",
            "## From remittance codes to rules",
            "",
            "| Group | CARC | RARC | Rule | What it means |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in sorted(m.outcome_rules, key=lambda r: (r.ann(GROUP), _num_key(r.ann(CARC)), r.ann(RARC), r.id)):
            g, c = r.ann(GROUP), r.ann(CARC)
            rarcs = ", ".join(f"[{x}]({md_href(p, 'denial-codes.md', anchor_id(RARC, x))})" for x in r.rarcs) or "-"
            lines.append(
                f"| [{g}]({md_href(p, 'denial-codes.md', anchor_id('group', g))}) "
                f"| [{c}]({md_href(p, 'denial-codes.md', anchor_id(CARC, c))}) {esc(self._carc_text(c))} "
                f"| {rarcs} | {self.rule_link(p, r)} | {esc(r.title)} |"
            )
        lines += ["", "Severity *warn* rules never deny; they flag a line that still pays."]
        if self.scenarios:
            intro = f"{self.guide_text.intro} " if self.guide_text.intro else ""
            lines += [
                "",
                f"## {esc(self.guide_text.heading)}",
                "",
                f"{intro}The decisions below are the engine's, computed when this page was generated"
                f" from the claims in `{self.guide_text.path}`.",
            ]
            for case in self.scenarios:
                lines += ["", f"### {esc(case.name)}", ""] + self.case_body(p, case, focus=None)
        return "\n".join(lines)

    def _carc_text(self, code: str) -> str:
        return f"({self._denial_text(CARC, code)})" if self._denial_text(CARC, code) else ""

    def _denial_text(self, annotation: str, code: str) -> str:
        """The text of a group code, CARC or RARC from the KB's list of them (`@docs denial_code`)."""
        role = self.m.denial_role(annotation)
        found = self.m.denial_codes.get(annotation, {}).get(code)
        return str(found[1].get(role.col("text"))) if role and found else ""

    # --- rules ---------------------------------------------------------------------------

    def rules_index(self) -> str:
        p = "rules/index.md"
        helpers = [r for r in self.m.rules if not r.id]
        by_head = defaultdict(list)
        for r in helpers:
            by_head[r.head].append(r)
        return TEMPLATES.get_template("rules_index.md.j2").render(
            relations_href=md_href(p, "relations/index.md"),
            rules=[(r, self.rule_link(p, r)) for r in sorted(self.m.id_rules, key=lambda r: r.id or "")],
            helper_count=len(helpers),
            helpers=[
                (self.rel_link(p, h), [self.rule_link(p, r, f"line {r.src.line}") for r in rs])
                for h, rs in sorted(by_head.items())
            ],
        )

    def rule_page(self, r: RuleDoc) -> str:
        p = r.page
        head, readings = read_rule(r.rule, self.decls, self.linker(p))
        statements = []
        for gid in r.ann("guidance").split():
            st = self.m.guidance.get(gid)
            statements.append((gid, md_href(p, "guidance.md", guidance_anchor(gid)), st.statement if st else ""))
        return TEMPLATES.get_template("rule.md.j2").render(
            r=r,
            head=head,
            readings=readings,
            rule_text=rule_text(r.rule),
            precedence=self._precedence(p, r),
            statements=statements,
            sources=_sources(r.sources),
            denial_rows=self._denial_rows(p, r) if r.ann(CARC) else [],
            graph_href=md_href(p, "graph.md"),
            diagram=self.rule_diagram(p, r),
            examples=self.rule_examples(p, r),
        )

    def _precedence(self, p: str, r: RuleDoc) -> list[str]:
        """Rules whose head names this rule (overrides) or whose body reads its outcome."""
        out = []
        for other in self.m.rules:
            if other.index == r.index:
                continue
            head_consts = [a.value for a in other.rule.head.args if isinstance(a, A.Const)]
            if r.id in head_consts and other.head not in ("deny", "warn"):
                out.append(
                    f"- {self.rule_link(p, other)} ({esc(other.title)}) can set this rule's finding aside: "
                    f"{esc(other.ann('summary'))}"
                )
            elif any(
                isinstance(a, A.Const) and a.value == r.id
                for atom in other.rule.body
                if isinstance(atom, A.Atom)
                for a in atom.args
            ):
                out.append(f"- {self.rule_link(p, other)} ({esc(other.title)}) builds on this rule's finding.")
        if r.head == "overridden":
            ids = [a.value for a in r.rule.head.args if isinstance(a, A.Const)]
            out += [
                f"- Sets aside findings of {self.rule_link(p, self.rule_ids[i])}." for i in ids if i in self.rule_ids
            ]
        return (["", "## Precedence", ""] + out) if out else []

    def _denial_rows(self, p: str, r: RuleDoc) -> list[str]:
        rows = []
        for kind, codes in ((GROUP, [r.ann(GROUP)]), (CARC, [r.ann(CARC)]), (RARC, r.rarcs)):
            role = self.m.denial_role(kind)
            label = role.text("label") if role else kind.upper()
            for code in codes:
                found = self.m.denial_codes.get(kind, {}).get(code)
                text = esc(self._denial_text(kind, code)) if found else f"(not in the {label} table)"
                rows.append(
                    f"| {esc(label)} [{esc(code)}]({md_href(p, 'denial-codes.md', anchor_id(kind, code))}) "
                    f"| {text} | {where(found[0]) if found else ''} |"
                )
        return rows

    def rule_examples(self, p: str, r: RuleDoc) -> list[str]:
        cases = self.cases_by_rule.get(r.id or "", [])
        if not cases:
            return [
                "No policy test case names this rule yet. Cases live next to the rules, in",
                "`kb/**/<name>.cases.json`; one whose `about` lists this rule appears here with its proof.",
            ]
        out = [f"The policy test cases whose `about` lists `{r.id}`, adjudicated when this page was generated."]
        for case in cases:
            out += ["", f"### {esc(case.name)}", ""] + self.case_body(p, case, focus=r.id)
        return out

    def case_body(self, p: str, case: Case, focus: str | None) -> list[str]:
        out = [f"Case from {where(case.src)}.", ""] if case.src.path else []
        out += [
            "| Line | Code | Modifiers | POS | Date | Units | Provider |",
            "| ---: | --- | --- | --- | --- | ---: | --- |",
        ]
        for ln in case.claim.get("lines", []) if isinstance(case.claim, dict) else []:
            code = str(ln.get("code", ""))
            pos = str(ln.get("pos", ""))
            mods = ", ".join(self.value_md(p, "line_modifier", "modifier", x) for x in ln.get("modifiers", []))
            out.append(
                f"| {ln.get('line', '')} | {self.code_link(p, code) if code else ''} | {mods} "
                f"| {self.value_md(p, 'line', 'pos', pos)} | {esc(ln.get('service_date', ''))} "
                f"| {ln.get('units', 1)} | {esc(ln.get('rendering_npi', ''))} |"
            )
        for h in case.claim.get("history", []) if isinstance(case.claim, dict) else []:
            out.append(
                f"| history {esc(h.get('claim_id', ''))} line {h.get('line', '')} | {self.code_link(p, str(h.get('code', '')))} "
                f"| {esc(', '.join(h.get('modifiers', [])))} | {esc(h.get('pos', ''))} | {esc(h.get('service_date', ''))} "
                f"| {h.get('units', 1)} | {esc(h.get('rendering_npi', ''))} |"
            )
        out += ["", '??? note "The claim as JSON"', "", "    ```json"]
        out += ["    " + ln for ln in json.dumps(case.claim, indent=2, sort_keys=True).splitlines()]
        out += ["    ```", ""]
        if case.error:
            return out + ['!!! failure "The engine could not adjudicate this case"', "", f"    {esc(case.error)}"]
        if case.result is None:
            return out + ["(Not adjudicated: the engine's API was not available when the site was built.)"]
        has_expect = bool(case.expect)
        out += [
            "| Line | Code | Decision |" + (" Expected |" if has_expect else "") + " Reasons (in force) | Overridden |",
            "| ---: | --- | --- |" + (" --- |" if has_expect else "") + " --- | --- |",
        ]
        for ln in case.result.get("lines", []):
            exp = case.expect.get(str(ln["line"]), {}) if isinstance(case.expect, dict) else {}
            in_force = [x for x in ln["reasons"] if not x.get("overridden_by")]
            over = [x for x in ln["reasons"] if x.get("overridden_by")]
            expected = esc(exp.get("decision", "")) + (
                " (" + esc(", ".join(exp.get("rules", []))) + ")" if exp.get("rules") else ""
            )
            out.append(
                f"| {ln['line']} | {self.code_link(p, ln['code'])} | **{ln['decision']}** |"
                + (f" {expected} |" if has_expect else "")
                + f" {', '.join(self._id_link(p, x['rule']) for x in in_force) or '-'} "
                f"| {', '.join(self._id_link(p, x['rule']) + ' by ' + self._id_link(p, x['overridden_by']) for x in over) or '-'} |"
            )
        if focus is None:
            out += ["", "What the remittance shows, line by line (group-CARC and RARC), and why:", ""]
            for ln in case.result.get("lines", []):
                for x in ln["reasons"]:
                    codes = f"{x.get('group', '')}-{x.get(CARC, '')}" + (
                        f" {' '.join(x.get(RARC, []))}" if x.get(RARC) else ""
                    )
                    if x.get("overridden_by"):
                        out.append(
                            f"- Line {ln['line']} ({ln['code']}): {self._id_link(p, x['rule'])} found: "
                            f"{esc(x.get('message', ''))} It is set aside by {self._id_link(p, x['overridden_by'])}, "
                            "so it does not deny the line."
                        )
                    else:
                        out.append(
                            f"- Line {ln['line']} ({ln['code']}): **{esc(codes)}** from {self._id_link(p, x['rule'])}: "
                            f"{esc(x.get('message', ''))}"
                        )
                if not ln["reasons"]:
                    out.append(f"- Line {ln['line']} ({ln['code']}): paid, no rule finds anything.")
        for ln in case.result.get("lines", []):
            for x in ln["reasons"]:
                if focus is not None and x["rule"] != focus:
                    continue
                status = f", overridden by {x['overridden_by']}" if x.get("overridden_by") else ""
                out += [
                    "",
                    (
                        f"**Line {ln['line']}, {self._id_link(p, x['rule'])}** ({esc(x.get('severity', ''))}, "
                        f"{esc(x.get('group', ''))}-{esc(x.get(CARC, ''))} {esc(' '.join(x.get(RARC, [])))}{esc(status)}): "
                        f"{esc(x.get('message', ''))}"
                    ),
                    "",
                ]
                role = x.get("role")
                if role in ("primary", "supporting"):
                    out += [f"*{role} reason for this line*", ""]
                out += [f"- {esc(b)}" for b in x.get("because") or []]
                out += [
                    f"- Guidance [{esc(c['id'])}]({md_href(p, 'guidance.md', guidance_anchor(str(c['id'])))})"
                    for c in x.get("citations", [])
                    if c.get("kind") == "guidance"
                ]
                if x.get("because") or any(c.get("kind") == "guidance" for c in x.get("citations", [])):
                    out.append("")
                if x.get("proof"):
                    out += [self.proof_html(p, x["proof"])]
        if focus is not None and not any(
            x["rule"] == focus for ln in case.result.get("lines", []) for x in ln["reasons"]
        ):
            out += ["", f"`{focus}` finds nothing on this claim: the case shows when the rule does not apply."]
        return out

    def _id_link(self, p: str, rule_id: str) -> str:
        r = self.rule_ids.get(rule_id)
        return self.rule_link(p, r) if r else f"`{rule_id}`"

    def proof_html(self, p: str, proof: dict) -> str:
        def rule_href(rid: str) -> str | None:
            r = self.rule_ids.get(rid)
            return html_href(p, r.page) if r else None

        def relation_href(name: str) -> str | None:
            rel = self.m.relations.get(name)
            return html_href(p, rel.page) if rel else None

        def source_text(s: dict) -> str:
            if "claim_field" in s:
                return f"claim {s['claim_field']}"
            if "file" in s:
                path = _strip_to_repo(str(s["file"]))
                return f"{path} row {s['row']}" if s.get("row") is not None else f"{path}:{s.get('line', '')}"
            return ""

        return render_proof(proof, rule_href=rule_href, relation_href=relation_href, source_text=source_text)

    # --- diagrams --------------------------------------------------------------------------

    def diagram_graph(self) -> nx.DiGraph:
        """Rules without an id folded into the relation they define; rules with one kept."""
        g = nx.DiGraph()
        m = self.m

        def fold(n):
            if n[0] == "rule" and not m.rules[n[1]].id:
                return ("rel", m.rules[n[1]].head)
            return n

        for n in m.graph.nodes:
            g.add_node(fold(n))
        for u, v, data in m.graph.edges(data=True):
            a, b = fold(u), fold(v)
            if a == b:
                continue
            neg = data["negative"] or bool(g.get_edge_data(a, b, {}).get("negative"))
            g.add_edge(a, b, negative=neg)
        return g

    def node_style(self, page: str, n) -> G.NodeStyle:
        m = self.m
        if n[0] == "rule":
            r = m.rules[n[1]]
            return G.NodeStyle(r.id or r.head, "rule", html_href(page, r.page, r.anchor), f"{r.id}: {r.title}")
        rel = m.relations.get(n[1])
        if rel is None:
            return G.NodeStyle(n[1], "derived", None, n[1])
        return G.NodeStyle(rel.name, rel.origin, html_href(page, rel.page), f"{rel.name}: {rel.summary}")

    def render_graph(self, page: str, g: nx.DiGraph, highlight=(), caption: str = "") -> str:
        style = {n: self.node_style(page, n) for n in g}
        return '<div class="pkb-diagram">\n' + G.svg(g, style, highlight=set(highlight), caption=caption) + "\n</div>"

    def rule_diagram(self, p: str, r: RuleDoc) -> str:
        g = self.graph
        node = ("rule", r.index)
        keep = nx.ancestors(g, node) | nx.descendants(g, node) | {node}
        return self.render_graph(p, g.subgraph(keep).copy(), {node}, f"What {r.id} depends on and what depends on it")

    def graph_page(self) -> str:
        p = "graph.md"
        g = self.graph
        lines = [
            "# How the rules depend on each other",
            "",
            "Every relation and every rule with an identifier, from the claim and the tables on the left",
            "to the outcomes on the right. An edge runs from what a rule reads to what it concludes;",
            "dashed edges are negated conditions (the rule needs the fact to be absent) or totals.",
            "Rules without an identifier are folded into the relation they define. Click a box to open",
            "its page.",
            "",
            _legend(),
            "",
            self.render_graph(p, g, caption="Dependency graph of the KB"),
        ]
        return "\n".join(lines)

    # --- relations -------------------------------------------------------------------------

    def relations_index(self) -> str:
        p = "relations/index.md"
        lines = ["# Relations", "", "Every relation (predicate) the KB declares, by where its facts come from.", ""]
        for origin in ORIGIN_ORDER:
            rels = sorted((r for r in self.m.relations.values() if r.origin == origin), key=lambda r: r.name)
            if not rels:
                continue
            lines += [
                f"## {ORIGIN_TEXT[origin].split(':')[0].capitalize()}",
                "",
                ORIGIN_TEXT[origin].split(": ", 1)[1].capitalize() + ".",
                "",
                "| Relation | Summary | Rows | Declared in |",
                "| --- | --- | ---: | --- |",
            ]
            for r in rels:
                rows = f"{r.rows:,}" if r.origin in ("table", "facts") else ""
                lines.append(f"| {self.rel_link(p, r.name)} | {esc(r.summary)} | {rows} | {where(r.src)} |")
            lines.append("")
        return "\n".join(lines)

    def relation_page(self, rel: RelationDoc) -> str:
        p = rel.page
        m = self.m
        definitions = []
        for i in rel.defined_by:
            r = m.rules[i]
            head, readings = read_rule(r.rule, self.decls, self.linker(p))
            title = f"Rule [{r.id}]({md_href(p, r.page)})" if r.id else "Rule"
            definitions.append(
                {
                    "heading": f"{title} at {r.src} {{#{r.anchor or anchor_id('rule', r.id)}}}",
                    "text": rule_text(r.rule),
                    "head": head,
                    "readings": readings,
                }
            )
        facts = [
            ([self.value_md(p, rel.name, a.name, v) for a, v in zip(rel.decl.attrs, row, strict=False)], s)
            for s, row in rel.facts[:FACTS_SHOWN]
        ]
        readers = []
        for i in rel.used_by:
            r = m.rules[i]
            readers.append(
                f"- {self.rule_link(p, r)}"
                + (f": {esc(r.title)}" if r.id else f" (defines {self.rel_link(p, r.head)})")
            )
        return TEMPLATES.get_template("relation.md.j2").render(
            rel=rel,
            origin_text=ORIGIN_TEXT[rel.origin],
            about=m.modules.get(rel.src.path, ""),
            type_href=lambda t: md_href(p, "types.md", anchor_id("type", t)),
            definitions=definitions,
            facts=facts,
            readers=readers,
            diagram=self.relation_diagram(p, rel),
        )

    def value_md(self, p: str, rel: str, attr: str, v: A.Value) -> str:
        target = self.constant_target(rel, attr, v)
        return f"[{esc(v)}]({md_href(p, *target)})" if target else esc(v)

    def relation_diagram(self, p: str, rel: RelationDoc) -> str:
        g = self.graph
        node = ("rel", rel.name)
        keep = {node} | set(g.predecessors(node)) | set(g.successors(node))
        return self.render_graph(p, g.subgraph(keep).copy(), {node}, f"What {rel.name} reads and what reads it")

    def types_page(self) -> str:
        p = "types.md"
        users = defaultdict(list)
        for rel in self.m.relations.values():
            for a in rel.decl.attrs:
                users[a.type].append((rel.name, a.name))
        lines = [
            "# Types",
            "",
            "The value types of the KB. Domain types are symbols with a shape every value loaded",
            "from a table or fact is checked against.",
            "",
        ]
        for name, _decl, info, src in self.m.types:
            lines += [f"## {name} {{#{anchor_id('type', name)}}}", "", esc(getattr(info, "summary", "")), ""]
            facts = [f"base type `{info.base}`"]
            if info.pattern:
                facts.append(f"pattern `{info.pattern}`")
            if info.is_date:
                facts.append("a real calendar date")
            if info.optional:
                facts.append("may be empty")
            lines.append("- " + "; ".join(facts))
            if src:
                lines.append(f"- Declared in {where(src)}")
            used = users.get(name, [])
            if used:
                lines.append("- Used by " + ", ".join(f"{self.rel_link(p, r)}.`{a}`" for r, a in sorted(used)))
            lines.append("")
        return "\n".join(lines)

    # --- codes -----------------------------------------------------------------------------

    def codes_index(self) -> str:
        p = "codes/index.md"
        m = self.m
        lines = [
            "# Codes",
            "",
            f"The {len(m.codes)} codes the rules name: every code of "
            + (
                ", ".join(
                    f"{self.rel_link(p, r.relation)}" for r in m.roles_named("code_list") if r.text("pages") == "all"
                )
                or "no list"
            )
            + " and the codes a rule or fact names. Any other code of the",
            f"KB's tables ({len(m.stats):,} codes with pair edits) is in the [code lookup]({md_href(p, 'codes/lookup.md')}).",
            "",
            "## Categories",
            "",
            "| Category | Codes |",
            "| --- | ---: |",
        ]
        for cat, codes in m.categories.items():
            lines.append(f"| [{esc(cat)}]({md_href(p, f'codes/category/{cat}.md')}) | {len(codes)} |")
        lines += [
            "",
            "## Ranges",
            "",
            "Named ranges the rules use; a range holds the known codes between its bounds.",
            "",
            "| Range | From | To | Known codes | Defined in |",
            "| --- | --- | --- | ---: | --- |",
        ]
        for name, rng in m.ranges.items():
            lines.append(
                f"| [{esc(name)}]({md_href(p, f'codes/range/{name}.md')}) | {rng.low} | {rng.high} | {len(rng.members):,} | {where(rng.src)} |"
            )
        others = sorted(c for c, d in m.codes.items() if not d.category)
        if others:
            lines += ["", "## Other codes the rules name", "", "| Code | Description | Ranges |", "| --- | --- | --- |"]
            for c in others:
                d = m.codes[c]
                lines.append(f"| {self.code_link(p, c)} | {esc(d.description)} | {esc(', '.join(d.ranges))} |")
        return "\n".join(lines)

    def category_page(self, cat: str) -> str:
        p = f"codes/category/{cat}.md"
        codes = [self.m.codes[c] for c in self.m.categories[cat] if c in self.m.codes]
        role = self.category_role
        assert role is not None  # a category page exists only when a relation plays the role
        relation, column = role.relation, role.col("category")
        readers = sorted(
            {
                m.rule
                for m in self.m.mentions
                if (m.relation, m.attr, m.value) == (relation, column, cat) and m.rule is not None
            }
        )
        # the table the category column comes from, when a table's rows carry it
        tables = sorted(
            {
                r.table
                for r in self.m.relations.values()
                if r.table
                and any(a.name == column for a in r.decl.attrs)
                and ("rel", r.name) in self.m.graph
                and nx.has_path(self.m.graph, ("rel", r.name), ("rel", relation))
            }
        )
        return TEMPLATES.get_template("category.md.j2").render(
            category=cat,
            codes=codes,
            relation_link=self.rel_link(p, relation),
            table=", ".join(tables),
            readers=[self.rule_link(p, self.m.rules[i]) for i in readers],
            code_table=self.code_table(p, [d.code for d in codes]),
        )

    def range_page(self, name: str) -> str:
        p = f"codes/range/{name}.md"
        rng = self.m.ranges[name]
        lines = [
            f"# Range: {esc(name)}",
            "",
            f"Codes from {rng.low} to {rng.high}, inclusive, that one of the KB's code lists knows; defined in {where(rng.src)}.",
            f"{len(rng.members):,} codes.",
            "",
        ]
        member = self.range_role
        readers = sorted(
            {
                m.rule
                for m in self.m.mentions
                if member
                and (m.relation, m.attr) == (member.relation, member.col("name"))
                and m.value == name
                and m.rule is not None
            }
        )
        if readers:
            lines += [
                "Rules that name this range: " + ", ".join(self.rule_link(p, self.m.rules[i]) for i in readers),
                "",
            ]
        lines += self.code_table(p, rng.members)
        return "\n".join(lines)

    def code_table(self, p: str, codes: Iterable[str]) -> list[str]:
        """Codes with their description, the short text of each per-code fact (`short=` of a
        `@docs code_fact` or `code_rows`) and their pair-edit count."""
        fields = lookup_fields(self.m.roles)
        edit = self.m.role("code_edit")
        edits = [self._edit_title(edit)] if edit else []
        lines = [
            "| Code | Description | " + " | ".join([esc(f.text("label")) for f in fields] + edits) + " |",
            "| --- | --- | " + " | ".join(["---"] * len(fields) + ["---:"] * len(edits)) + " |",
        ]
        for c in codes:
            values = list(self.m.lookup_extra.get(c, {}).get("f", [""] * len(fields)))
            st = self.m.stats.get(c)
            lines.append(
                f"| {self.code_link(p, c)} | {esc(self._description(c))} | "
                + " | ".join([esc(v) for v in values] + ([str(st.total if st else 0)] if edit else []))
                + " |"
            )
        return lines

    def _description(self, code: str) -> str:
        d = self.m.codes.get(code)
        return d.description if d else self.m.lookup_descriptions.get(code, "")

    def _edit_title(self, edit: DocRole) -> str:
        rel = self.m.relations.get(edit.relation)
        title = " ".join((rel.decl.doc.get("title") or "").split()) if rel else ""
        title = title or edit.relation
        return esc(title)

    def code_page(self, d: CodeDoc) -> str:
        p = d.page
        m = self.m
        # A search for a code should find the code's own page before the rule and example pages
        # that mention it (mkdocs-material's per-page search boost).
        lines = ["---", "search:", "  boost: 5", "---", "", f"# {d.code}", ""]
        for role, src, row in d.listed:  # the code lists that name it (`@docs code_list`)
            text = next((str(row.get(c)) for c in role.cols("description") if row.get(c)), "")
            label, note = role.text("label"), role.text("note")
            lines += [
                (f"{esc(label)}: " if label else "")
                + (f"*{esc(text)}* " if text else "")
                + f"({esc(note) + '; ' if note else ''}{where(src)})",
                "",
            ]
        row_rules = self._row_rules(p, d)
        lines += ["| Property | Value |", "| --- | --- |"]
        if d.category:
            lines.append(f"| Category | [{esc(d.category)}]({md_href(p, f'codes/category/{d.category}.md')}) |")
        if d.ranges:
            lines.append(
                "| Ranges | " + ", ".join(f"[{esc(x)}]({md_href(p, f'codes/range/{x}.md')})" for x in d.ranges) + " |"
            )
        for role in self.m.roles:
            if role.role == "code_fact":
                found = d.facts.get(role.relation)
                if found:
                    src, row = found
                    text = fill(role.text("text"), dict(zip(row.names, row, strict=False)))
                    lines.append(
                        f"| {esc(role.text('label'))} | {esc(text)}{row_rules.get(role.relation, '')}; {where(src)} |"
                    )
                elif role.text("none"):
                    lines.append(f"| {esc(role.text('label'))} | {esc(role.text('none'))} |")
            elif role.role == "code_link":
                others, reverse = d.links.get(role.relation, ([], []))
                for label, codes in ((role.text("label"), others), (role.text("reverse"), reverse)):
                    if codes:
                        lines.append(f"| {esc(label)} | " + ", ".join(self.code_link(p, c) for c in codes) + " |")
        for role in self.m.roles_named("code_rows"):
            lines += ["", f"## {esc(role.text('heading'))}", ""] + self._code_rows(p, d, role, row_rules)
        lines += ["", "## Rules that can decide a claim with it", ""]
        if d.outcome_rules:
            lines += [f"- {self.rule_link(p, m.rules[i])}: {esc(m.rules[i].title)}" for i in d.outcome_rules]
        else:
            lines.append("None.")
        shown = [(i, how, neg) for i, (how, neg) in d.via.items() if d.via_outcomes.get(i)]
        if shown:
            lines += [
                "",
                "How the rules reach this code:",
                "",
                "| Rule | How | Leads to | Defined in |",
                "| --- | --- | --- | --- |",
            ]
            for i, how, neg in sorted(shown, key=lambda t: (m.rules[t[0]].src, t[0])):
                rule = m.rules[i]
                label = (
                    self.rule_link(p, rule)
                    if rule.id
                    else f"{self.rule_link(p, rule, rule.head)} (a rule for {rule.head})"
                )
                outs = [o for o in d.via_outcomes[i] if o != i]
                lead = ", ".join(self.rule_link(p, m.rules[o]) for o in outs) if outs else "(itself)"
                lines.append(
                    f"| {label} | {esc(how)}{' (negated: its absence counts)' if neg else ''} | {lead} "
                    f"| {where(rule.src)} |"
                )
        facts = [x for x in d.mentions if x.rule is None]
        if facts:
            lines += [
                "",
                "Listed in the KB's facts: "
                + ", ".join(f"{self.rel_link(p, x.relation)} ({where(x.src)})" for x in facts),
            ]
        edit = self.m.role("code_edit")
        if edit is not None:
            lines += ["", f"## {self._edit_title(edit)}", ""] + self.edits_section(p, d, edit)
        return "\n".join(lines)

    def _code_rows(self, p: str, d: CodeDoc, role: DocRole, row_rules: dict[str, str]) -> list[str]:
        """A code's rows of a `@docs code_rows` relation as a table, every column but the code."""
        rows = d.rows.get(role.relation, [])
        if not rows:
            return [esc(role.text("none") or "No rows.")]
        attrs = [a for a in self.decls[role.relation].attrs if a.name != role.col("code")]
        heads, blanks = role.extra.get("head", {}), role.extra.get("blank", {})
        out = [
            "| " + " | ".join(esc(heads.get(a.name, a.name)) for a in attrs) + " |",
            "| " + " | ".join("---:" if a.type == "number" else "---" for a in attrs) + " |",
        ]
        for _s, r in rows:
            out.append(
                "| "
                + " | ".join(
                    esc(r.get(a.name)) if str(r.get(a.name)) != "" else esc(blanks.get(a.name, "")) for a in attrs
                )
                + " |"
            )
        applied = row_rules.get(role.relation, "")
        out += [
            "",
            f"From {', '.join(where(s) for s, _r in rows)}; column meanings on {self.rel_link(p, role.relation)}."
            + (f" This row is{applied[1:]}." if applied else ""),
        ]
        return out

    def _row_rules(self, p: str, d: CodeDoc) -> dict[str, str]:
        """For each table, the outcome rules that read this code's row there (", applied by ...")."""
        out: dict[str, list[int]] = defaultdict(list)
        for i, (how, _neg) in d.via.items():
            mt = re.fullmatch(r"its (\w+) row", how)
            if mt:
                out[mt.group(1)] += [o for o in d.via_outcomes.get(i, [])]
        return {
            t: ", applied by " + ", ".join(self.rule_link(p, self.m.rules[o]) for o in sorted(set(os)))
            for t, os in out.items()
            if os
        }

    def _applied_by(self, p: str, relation: str) -> str:
        """Links to the deny rules a row of `relation` can bring about (through any chain of
        derived relations, an even number of negations on the way)."""
        m = self.m
        found = {
            o
            for _u, (_kind, i), data in m.graph.out_edges(("rel", relation), data=True)
            for o, pols in polarity(m.graph, i, data["negative"], m.rules).items()
            if True in pols and m.rules[o].head == "deny"
        }
        return ", ".join(self.rule_link(p, m.rules[o]) for o in sorted(found))

    def edits_section(self, p: str, d: CodeDoc, edit: DocRole) -> list[str]:
        """The code's rows in the pair-edit relation (`@docs code_edit`), on each side."""
        st = d.stats
        if not st.total:
            return [f"No row of {self.rel_link(p, edit.relation)} names this code."]
        rel = self.m.relations[edit.relation]
        first, second = self._side_labels(edit)
        applied = self._applied_by(p, edit.relation)
        out = [
            esc(rel.summary) + (f" Applied by {applied}." if applied else ""),
            "",
            f"Rows are from `{rel.table}` ({self.rel_link(p, edit.relation)}); click a column heading to sort.",
            "",
            "| Side | Active | Deleted |",
            "| --- | ---: | ---: |",
            f"| {d.code} as {esc(first)} | {st.col1_active} | {st.col1_deleted} |",
            f"| {d.code} as {esc(second)} | {st.col2_active} | {st.col2_deleted} |",
        ]
        for side, total, label in ((1, st.col1_total, first), (2, st.col2_total, second)):
            if not total:
                continue
            rows, every = d.edits[side]
            out += ["", f"### {d.code} as {esc(label)}", ""]
            if every:
                out.append(f"All {total} rows.")
            else:
                out.append(
                    f"{total:,} rows; listed are the {len(rows)} whose partner has a page here. The "
                    f"[code lookup]({md_href(p, 'codes/lookup.md')}) gives counts and first partners of any code."
                )
            if rows:
                out += ["", self._edit_table(p, rows, side, edit)]
        return out

    @staticmethod
    def _side_labels(edit: DocRole) -> tuple[str, str]:
        """How the code pages name the two sides of an edit: the role's labels, else the columns."""
        return (
            edit.text("first_label") or edit.col("first").replace("_", " "),
            edit.text("second_label") or edit.col("second").replace("_", " "),
        )

    def _edit_table(self, p: str, rows: list, side: int, edit: DocRole) -> str:
        heads = {"indicator": edit.col("indicator"), "reason": edit.col("reason")}
        shown = {k: v.replace("_", " ").capitalize() for k, v in heads.items() if v}
        html = [
            '<table class="pkb-sortable pkb-ptp" data-search-exclude="">',
            (
                "<thead><tr><th>Partner</th><th>Description</th>"
                + "".join(f"<th>{escape(h)}</th>" for k, h in shown.items() if k == "indicator")
                + "<th>Status</th>"
                + "".join(f"<th>{escape(h)}</th>" for k, h in shown.items() if k == "reason")
                + "<th>Source row</th></tr></thead>"
            ),
            "<tbody>",
        ]
        for r in rows:
            partner = r.second if side == 1 else r.first
            desc = self.m.lookup_descriptions.get(partner, "")
            status = "active" if not r.deleted else f"deleted {r.deleted}"
            html.append(
                f'<tr><td><a href="{escape(self.code_href_html(p, partner))}">{partner}</a></td>'
                f"<td>{escape(desc)}</td>"
                + (f"<td>{escape(r.indicator)}</td>" if "indicator" in shown else "")
                + f"<td>{status}</td>"
                + (f"<td>{escape(r.reason)}</td>" if "reason" in shown else "")
                + f"<td>{r.src.row}</td></tr>"
            )
        return "\n".join(html + ["</tbody>", "</table>"])

    def _table_titles(self) -> list[str]:
        """The titles of the tables that name codes (the roles' relations), for the lookup page."""
        out = []
        for r in self.m.roles:
            rel = self.m.relations.get(r.relation)
            if r.role.startswith("code_") and rel is not None and rel.origin == "table":
                title = " ".join((rel.decl.doc.get("title") or "").split())
                if title and title not in out:
                    out.append(title)
        return out

    def lookup_page(self) -> str:
        return "\n".join(
            [
                "# Code lookup",
                "",
                f"Any of the {len(self.m.lookup_extra):,} codes of the KB's tables"
                f" ({', '.join(self._table_titles())}): what they say of it,",
                "with the first partners on each side of its edits. Codes the rules name have a full page; the lookup links to it.",
                "",
                '<div class="pkb-lookup" data-search-exclude="">',
                '<form class="pkb-lookup-form" onsubmit="return false">',
                (
                    '<label for="pkb-code">Code</label> <input id="pkb-code" name="code" autocomplete="off" spellcheck="false" '
                    'placeholder="e.g. 20610" maxlength="5" size="8">'
                ),
                "</form>",
                '<div id="pkb-lookup-result" aria-live="polite"></div>',
                "</div>",
                "",
                "The data comes from `assets/lookup/*.json`, generated with the site; no network is needed.",
                "Partners are given as `code (indicator)`; only active edits are listed.",
            ]
        )

    # --- POS, modifiers, denial codes ------------------------------------------------------------

    def reference_page(self, page: str) -> str:
        """A reference list's page (`@docs reference page=...`): its groups and tags with the rules
        that read them, the values rules name with what they do, and every row."""
        p = f"{page}.md"
        m = self.m
        refs = [r for r in self.references if r.text("page") == page]
        lines = [f"# {esc(refs[0].text('title'))}", ""]
        for ref in refs:
            rel = m.relations[ref.relation]
            lines += [esc(rel.summary), ""] if rel.summary else []
        for ref in refs:
            lines += self._reference_groups(p, ref) + self._reference_tags(p, ref) + self._reference_named(p, ref)
            lines += self._reference_table(p, ref, len(refs) > 1)
        return "\n".join(lines)

    def _reference_groups(self, p: str, ref: DocRole) -> list[str]:
        """One section per value of the group column that a rule names (e.g. a setting)."""
        col = ref.col("group")
        by_value: dict[str, list[int]] = defaultdict(list)
        for x in self.m.mentions:
            if col and isinstance(x.value, str) and (x.relation, x.attr) == (ref.relation, col) and x.rule is not None:
                by_value[x.value].append(x.rule)
        out = []
        for value in sorted(by_value):
            rules = sorted(set(by_value[value]))
            out += [
                f"## {esc(col.replace('_', ' ').capitalize())}: {esc(value)} {{#{anchor_id(col, value)}}}",
                "",
                "Rules that read it: " + ", ".join(self.rule_link(p, self.m.rules[i]) for i in rules),
                "",
            ]
        return out

    def _reference_tags(self, p: str, ref: DocRole) -> list[str]:
        """Sections per tag (`@docs tag`) of the list's values, with what each tag does."""
        out = []
        for t in self.tag_roles:
            if t.text("page") != ref.text("page"):
                continue
            members: dict[str, list[str]] = defaultdict(list)
            tag_src: dict[str, Src] = {}
            for key, tags in sorted(self.m.tags.get(t.relation, {}).items()):
                for s, tag in tags:
                    members[tag].append(key)
                    tag_src.setdefault(tag, s)
            out += [f"## {esc(t.text('title'))}", ""]
            summary = self.m.relations[t.relation].summary
            out += [esc(summary), ""] if summary else []
            out += [
                "*Lifts* means the value can keep the rule from denying (the rule needs its absence);",
                "*can trigger* means its presence is one of the rule's conditions.",
                "",
            ]
            col = t.col("tag")
            for tag in sorted(members):
                out += [
                    f"### {esc(tag)} {{#{anchor_id(col, tag)}}}",
                    "",
                    "Members: " + ", ".join(f"[{x}](#{anchor_id(self._anchor(ref), x)})" for x in members[tag]),
                    "",
                    f"Listed in {self.rel_link(p, t.relation)} from {where(tag_src[tag])}.",
                    "",
                ]
                out += self._effects(
                    p,
                    [
                        x
                        for x in self.m.mentions
                        if (x.relation, x.attr, x.value) == (t.relation, col, tag) and x.rule is not None
                    ],
                )
        return out

    def _reference_named(self, p: str, ref: DocRole) -> list[str]:
        """The values of the list that rules name directly, with what each does."""
        direct = defaultdict(list)
        own = {ref.relation} | {t.relation for t in self.tag_roles if t.text("page") == ref.text("page")}
        for x in self.m.mentions:
            rel = self.m.relations.get(x.relation)
            atype = next((a.type for a in rel.decl.attrs if a.name == x.attr), "") if rel else ""
            if (
                x.rule is not None
                and isinstance(x.value, str)
                and x.relation not in own
                and self._names_reference(ref, atype, x.attr)
            ):
                direct[x.value].append(x)
        if not direct:
            return []
        out = [f"## {esc(ref.text('title'))} the rules name", ""]
        for value in sorted(direct):
            out += [f"### {esc(value)}", ""] + self._effects(p, direct[value])
        return out

    def _reference_table(self, p: str, ref: DocRole, titled: bool) -> list[str]:
        """Every row of the list, with the rules and relations that name each value and its tags."""
        m = self.m
        key = ref.col("key")
        named_by: dict[str, list[tuple[str, str]]] = defaultdict(list)  # value -> (label, page)
        for x in m.mentions:
            rel = m.relations.get(x.relation)
            atype = next((a.type for a in rel.decl.attrs if a.name == x.attr), "") if rel else ""
            if (
                not isinstance(x.value, str)
                or x.relation == ref.relation
                or not self._names_reference(ref, atype, x.attr)
            ):
                continue
            items: list[RuleDoc | RelationDoc]
            if x.rule is not None:
                items = [m.rules[x.rule]]
            else:  # a listed fact: the relation, and the rules that read it
                items = [m.relations[x.relation]] + [
                    m.rules[i] for i in m.relations[x.relation].used_by if m.rules[i].id
                ]
            for item in items:
                label = (item.id or item.head) if isinstance(item, RuleDoc) else item.name
                if (label, item.page) not in named_by[x.value]:
                    named_by[x.value].append((label, item.page))
        tags = [t for t in self.tag_roles if t.text("page") == ref.text("page")]
        attrs = [a.name for a in self.decls[ref.relation].attrs]
        group = ref.col("group")
        grouped = {
            x.value
            for x in m.mentions
            if group and (x.relation, x.attr) == (ref.relation, group) and x.rule is not None
        }
        names = ref.extra.get("head", {})
        heads = [names.get(a, a.replace("_", " ").capitalize()) for a in attrs]
        heads += ["Named by"] + [t.text("title") for t in tags] + ["Source row"]
        out = [f"## All {esc(ref.text('title')).lower() if not titled else self.rel_link(p, ref.relation)}", ""]
        out.append(
            '<table class="pkb-sortable"><thead><tr>'
            + "".join(f"<th>{escape(h)}</th>" for h in heads)
            + "</tr></thead><tbody>"
        )
        for s, r in m.references.get(ref.relation, []):
            value = str(r.get(key))
            cells = []
            for a in attrs:
                v = str(r.get(a))
                if a == key:
                    cells.append(f"<strong>{escape(v)}</strong>")
                elif a == group and v in grouped:
                    cells.append(f'<a href="#{anchor_id(group, v)}">{escape(v)}</a>')
                else:
                    cells.append(escape(v))
            cells.append(
                ", ".join(
                    f'<a href="{escape(html_href(p, page))}">{escape(label)}</a>'
                    for label, page in named_by.get(value, [])
                )
            )
            for t in tags:
                cells.append(
                    ", ".join(
                        f'<a href="#{anchor_id(t.col("tag"), tag)}">{escape(tag)}</a>'
                        for _s, tag in m.tags.get(t.relation, {}).get(value, [])
                    )
                )
            cells.append(f"row {s.row}" if s.row is not None else where(s))
            out.append(
                f'<tr id="{anchor_id(self._anchor(ref), value)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
            )
        table = m.relations[ref.relation].table
        out += [
            "</tbody></table>",
            "",
            f"Source: `{table}`." if table else f"Source: {where(m.relations[ref.relation].src)}.",
            "",
        ]
        return out

    def _effects(self, p: str, mentions: list) -> list[str]:
        """What a modifier (or role) does: for each outcome rule it reaches, lifts or triggers."""
        m = self.m
        effects: dict[int, set[str]] = defaultdict(set)
        via: dict[int, set[int]] = defaultdict(set)
        for x in mentions:
            for o, pols in polarity(m.graph, x.rule, x.negated, m.rules).items():
                effects[o] |= {"can trigger" if pol else "lifts" for pol in pols}
                via[o].add(x.rule)
        if not effects:
            return ["No outcome rule depends on it.", ""]
        out = ["| Rule | Effect | Read in |", "| --- | --- | --- |"]
        for o in sorted(effects, key=lambda i: m.rules[i].id or ""):
            read_in = ", ".join(self.rule_link(p, m.rules[i], m.rules[i].id or m.rules[i].head) for i in sorted(via[o]))
            out.append(f"| {self.rule_link(p, m.rules[o])} | {' and '.join(sorted(effects[o]))} | {read_in} |")
        return out + [""]

    def denial_codes_page(self) -> str:
        p = "denial-codes.md"
        m = self.m
        by: dict[str, dict[str, list[RuleDoc]]] = {k: defaultdict(list) for k in (GROUP, CARC, RARC)}
        for r in m.outcome_rules:
            by[GROUP][r.ann(GROUP)].append(r)
            by[CARC][r.ann(CARC)].append(r)
            for x in r.rarcs:
                by[RARC][x].append(r)
        lines = [
            "# Denial codes",
            "",
            "The group codes, CARCs and RARCs the KB's rules put on a denial, with their text from the",
            f"code lists the KB ships, and the rules that use each. To go from a remittance to a rule, see [the guide]({md_href(p, 'guide.md')}).",
            "",
        ]
        for kind in (GROUP, CARC, RARC):
            role = m.denial_role(kind)
            table = m.denial_codes.get(kind, {})
            title = role.text("title") if role else f"@{kind} codes"
            label = role.text("label") if role else kind.upper()
            lines += [f"## {esc(title)}", ""]
            for code in sorted(by[kind], key=_num_key):
                row = table.get(code)
                lines += [
                    f"### {esc(label)} {esc(code)} {{#{anchor_id(kind, code)}}}",
                    "",
                    (esc(self._denial_text(kind, code)) + f" ({where(row[0])})")
                    if row
                    else "*Not in the KB's code list.*",
                    "",
                ]
                until = str(row[1].get(role.col("until"))) if row and role and role.col("until") else ""
                if until:
                    lines += [f"Stopped being used on {until}.", ""]
                lines += [
                    f"- {self.rule_link(p, r)}: {esc(r.title)}"
                    for r in sorted(by[kind][code], key=lambda r: r.id or "")
                ]
                lines.append("")
        return "\n".join(lines)

    # --- examples ------------------------------------------------------------------------------

    def guidance_page(self) -> str:
        """Every statement of the injection guidance, paraphrased, with the rules that cite it
        (their `@guidance`) or the reason a claim cannot decide it."""
        p = "guidance.md"
        cited: dict[str, list[RuleDoc]] = defaultdict(list)
        for r in self.m.id_rules:
            for gid in r.ann("guidance").split():
                cited[gid].append(r)
        statements = sorted(self.m.guidance.values(), key=lambda g: _num_key(g.id))
        encoded = sum(1 for g in statements if cited.get(g.id))
        undecidable = sum(1 for g in statements if g.undecidable and not cited.get(g.id))
        role = self.m.role("guidance")
        rel = self.m.relations.get(role.relation) if role else None
        source = " ".join((rel.decl.doc.get("source") or "").split()) if rel else ""
        lines = [
            f"# {esc(role.text('title', 'Guidance') if role else 'Guidance')}",
            "",
            f"The guidance{f' (`{source}`)' if source else ''} statement by statement, in our own words.",
            "Each statement has a stable id; a rule that encodes it names the id in its `@guidance`",
            "annotation, and an explanation of a denial links here. A statement that a claim and its",
            "record cannot decide says why.",
            "",
            f"{len(statements)} statements: {encoded} encoded by rules, {undecidable} not decidable from a claim, "
            f"{len(statements) - encoded - undecidable} neither (yet).",
            "",
        ]
        for g in statements:
            lines += [
                f"## {esc(g.id)} {{#{guidance_anchor(g.id)}}}",
                "",
                f"> {esc(g.statement)}",
                "",
                f"Section: {esc(g.section)} ({where(g.src)})",
                "",
            ]
            rules = cited.get(g.id, [])
            if rules:
                lines.append(
                    "Encoded by: " + ", ".join(f"{self.rule_link(p, r)} ({esc(r.title)})" for r in rules) + "."
                )
            if g.undecidable:
                lines.append(f"Not decidable from a claim: {esc(g.undecidable)}")
            if not rules and not g.undecidable:
                lines.append("Not yet encoded by a rule.")
            lines.append("")
        unknown = sorted(gid for gid in cited if gid not in self.m.guidance)
        if unknown:
            lines += [
                "## Cited but not listed",
                "",
                "Rules cite these ids, which are not in the guidance list: " + ", ".join(esc(u) for u in unknown) + ".",
            ]
        return "\n".join(lines)

    def examples_page(self) -> str:
        p = "examples.md"
        m = self.m
        lines = [
            "# Worked examples",
            "",
            "The policy test cases (`kb/**/*.cases.json`), adjudicated when the site was generated. Each",
            "rule page shows the cases that name it, with the proof of its finding.",
            "",
        ]
        if not m.cases:
            return "\n".join(lines + ["No policy test cases yet."])
        lines += ["| Case | About | Decisions | Matches expectation | Source |", "| --- | --- | --- | --- | --- |"]
        for case in m.cases:
            about = ", ".join(self._id_link(p, x) for x in case.about)
            if case.result is None:
                decisions, ok = esc(case.error or "not adjudicated"), ""
            else:
                decisions = ", ".join(f"{ln['line']}: {ln['decision']}" for ln in case.result.get("lines", []))
                ok = "yes" if _meets(case) else "**no**"
            lines.append(f"| {esc(case.name)} | {about} | {decisions} | {ok} | {where(case.src)} |")
        return "\n".join(lines)


def rule_text(rule: A.Rule, width: int = 76) -> str:
    """The rule as written; a long one with one body condition per line."""
    if len(rule.text) <= width or "\n" in rule.text:
        return rule.text
    parts = _split_top_level(rule.text.split(":-", 1)[1].strip().rstrip("."))
    head = rule.text.split(":-", 1)[0].strip()
    return f"{head} :-\n    " + ",\n    ".join(parts) + "."


def _split_top_level(body: str) -> list[str]:
    """Split at commas outside parentheses, braces and strings."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(body):
        if quoted:
            quoted = not (ch == '"' and body[i - 1] != "\\")
        elif ch == '"':
            quoted = True
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i].strip())
            start = i + 1
    return parts + [body[start:].strip()]


def _meets(case: Case) -> bool:
    """The engine's decisions and in-force rules equal what the case expects."""
    if case.result is None:
        return False
    got = {str(ln["line"]): ln for ln in case.result.get("lines", [])}
    for line, exp in (case.expect or {}).items():
        ln = got.get(str(line))
        if ln is None or ("decision" in exp and ln["decision"] != exp["decision"]):
            return False
        if "rules" in exp:
            in_force = sorted(x["rule"] for x in ln["reasons"] if not x.get("overridden_by"))
            if in_force != sorted(exp["rules"]):
                return False
    return True


def _legend() -> str:
    items = [
        ("table", "table (CSV)"),
        ("facts", "facts in the KB"),
        ("claim", "from the claim"),
        ("derived", "derived relation"),
        ("rule", "rule with an id"),
        ("outcome", "outcome"),
    ]
    spans = " ".join(f'<span class="pkb-legend-item {c}">{escape(t)}</span>' for c, t in items)
    return (
        f'<p class="pkb-legend" data-search-exclude="">{spans} <span class="pkb-legend-neg">dashed: negated</span></p>'
    )


def _vintage(header: str) -> str:
    """The first sentence of a KB file's header comment, without how the table was imported."""
    text = re.sub(r",? from \.\./shared\S* via `[^`]*`", "", header)
    mt = re.match(r"(.+?[.])(\s|$)", text)
    return mt.group(1) if mt else text


def _sources(items: list[str]) -> list[str]:
    """`doc, "section"; "other section"`: the later items cite the same document."""
    out, doc = [], ""
    for item in items:
        if item.startswith('"') and doc:
            item = f"{doc}, {item}"
        else:
            doc = item.split(",", 1)[0] if "," in item else ""
        out.append(item)
    return out


def guidance_anchor(statement_id: str) -> str:
    """The page anchor of a guidance statement (the adjudication's citations link to it)."""
    return statement_id.lower()


def _num_key(code: str) -> tuple:
    return (0, int(code), "") if code.isdigit() else (1, 0, code)


def _strip_to_repo(path: str) -> str:
    """Proof sources name files as the engine saw them; show them from the repository root."""
    mt = re.search(r"(?:^|/)(kb/.*)$", path)
    return mt.group(1) if mt else path
