"""The mkdocs-gen-files script: every page that is a pure function of the KB, made at build time.

`mkdocs.yml` runs this under `mkdocs build`; it renders the site for the KB named by the
POLICYKB_DOCS_KB environment variable (default: `kb/` beside mkdocs.yml) and hands each file to
mkdocs-gen-files, which adds it to the build (a golden page committed in `site/` is replaced by
the generated one, so the build always shows the KB as it is). A KB with errors stops the build
with the checker's diagnostics.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mkdocs_gen_files

from engine.diagnostics import DiagnosticError
from engine.docs.build import render
from engine.docs.scenarios import ScenarioError

KB_ENV = "POLICYKB_DOCS_KB"


def kb_dir() -> Path:
    """The KB to document: $POLICYKB_DOCS_KB, else kb/ beside the mkdocs configuration."""
    named = os.environ.get(KB_ENV)
    if named:
        return Path(named)
    config_file = mkdocs_gen_files.config.config_file_path
    return Path(config_file).resolve().parent / "kb" if config_file else Path("kb")


def main() -> None:
    root = kb_dir()
    if not root.is_dir():
        sys.exit(f"{KB_ENV}: {root} is not a KB directory")
    try:
        files, _counts = render(root)
    except DiagnosticError as exc:
        for d in exc.diagnostics:
            print(d.header(), file=sys.stderr)
        sys.exit(f"{root}: the KB has errors, so no site was generated")
    except ScenarioError as exc:
        sys.exit(str(exc))
    for path, data in files.items():
        with mkdocs_gen_files.open(path, "wb") as fh:
            fh.write(data)


if __name__ in ("__main__", "<run_path>"):  # run by mkdocs-gen-files (runpy), never on import
    main()
