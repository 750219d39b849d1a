"""`python -m engine.docs [--check] [--kb DIR] [--out DIR]`: generate the reference site's Markdown.

Example: `python -m engine.docs && mkdocs build --strict` (HTML in build/html). With --check the
exit status is 1 when site/ differs from what the KB generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.diagnostics import DiagnosticError
from engine.docs.build import generate
from engine.kb import default_kb_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.docs", description=__doc__.splitlines()[0])
    ap.add_argument("--kb", type=Path, default=None, help="KB directory (default: the bundled kb/)")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: site/ beside the KB)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 when site/ is stale")
    args = ap.parse_args(argv)
    kb_dir = args.kb or default_kb_dir()
    out = args.out or Path(kb_dir).resolve().parent / "site"
    try:
        report = generate(kb_dir, out, check=args.check)
    except DiagnosticError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return 2
    if args.check:
        if report.stale:
            print(f"{out}: {len(report.stale)} generated files are stale; run `python -m engine.docs`:", file=sys.stderr)
            for path in report.stale[:20]:
                print(f"  {path}", file=sys.stderr)
            if len(report.stale) > 20:
                print(f"  ... and {len(report.stale) - 20} more", file=sys.stderr)
            return 1
        print(f"{out}: up to date ({report.pages} pages, {report.files} files, {report.seconds:.1f}s)")
        return 0
    print(f"{out}: {report.pages} pages, {report.files} files; {len(report.written)} written, "
          f"{len(report.removed)} removed ({report.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
