"""The KB as a browsable reference site, generated from the rules and tables (never hand-edited).

Pipeline, one way: `model` collects what the pages need from a loaded KB (pure data), `reading`
turns rule bodies into plain language, `graph` lays out dependency diagrams as SVG, `proofs`
renders proof trees, `pages` writes Markdown, `build` writes `site/` (or checks it is fresh).
`mkdocs.yml` turns `site/` into HTML. Which relation plays which part (code lists, pair edits,
reference lists, denial codes, guidance) comes from the KB's `@docs` annotations
(engine/docroles.py), so nothing here names a relation of a particular KB.
"""

from engine.docs.build import DocsReport, generate

__all__ = ["DocsReport", "generate"]
