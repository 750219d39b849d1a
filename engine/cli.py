"""The `policykb` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 success; 1 the KB has errors, a check failed, or a batch had error records;
2 unusable input (missing file, malformed claim, bad arguments).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from rich.console import Console

from engine.diagnostics import DiagnosticError

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2
KB_OPTION = click.option("--kb", "kb_dir", type=click.Path(path_type=Path), default=None,
                         help="KB directory (default: the bundled kb/, or $POLICYKB_KB).")

def _console(stderr: bool = False) -> Console:
    """Full width on a terminal; a wide fixed width when piped, so trees are never cropped."""
    c = Console(stderr=stderr, highlight=False)
    return c if c.is_terminal else Console(stderr=stderr, highlight=False, width=200)


out = _console()
err = _console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="policykb")
def main() -> None:
    """PolicyKB: medical-billing policy as Datalog.

    \b
    Examples:
      policykb check kb/                               # check the KB, every problem at once
      policykb explain examples/office-96372-with-em.json
      policykb explain claim.json --line 2 --why-not ncci.ptp
      policykb scrub claims.jsonl -o results.jsonl --workers 2
      policykb docs                                    # regenerate the reference site in site/
    """


def _open_kb(kb_dir: Path | None):
    from engine.api import PolicyKB
    try:
        return PolicyKB.open(kb_dir)
    except DiagnosticError as exc:
        err.print(f"[bold red]The KB has {len(exc.diagnostics)} error(s); run `policykb check` to see them.[/]")
        for d in exc.diagnostics[:5]:
            err.print(d.header(), highlight=False)
        sys.exit(EXIT_FAIL)


@main.command()
@click.argument("kb_dir", type=click.Path(path_type=Path), required=False)
@click.option("--verbose", "-v", is_flag=True, help="Also list the tables loaded and what they cost.")
def check(kb_dir: Path | None, verbose: bool) -> None:
    """Check a KB: syntax, declarations, arity, types, safety, stratification, annotations,
    tables. Prints every problem as path:line:col: error[CODE]: message with the source line.

    \b
    Example:
      policykb check kb/
    """
    from engine.kb import default_kb_dir
    sys.exit(_report_check(kb_dir or default_kb_dir(), out, verbose))


def _report_check(root: Path, console: Console, verbose: bool = False) -> int:
    """Check the KB at `root`, print every problem to `console`; the exit code."""
    from engine.kb import check_kb
    from engine.render.text import render_diagnostics
    try:
        with err.status("checking the KB (the first run loads the tables into the cache)…"):
            kb = check_kb(root)
    except DiagnosticError as exc:
        render_diagnostics(exc.diagnostics, lambda p, n: None, err)
        return EXIT_INPUT
    render_diagnostics([_from_cwd(d, root) for d in kb.diagnostics], _source_line(kb, root), console)
    errors = len(kb.errors)
    warnings = len(kb.diagnostics) - errors
    rules = len(kb.program.rules)
    if verbose:
        from rich.table import Table
        t = Table(title="tables", title_justify="left")
        for col in ("relation", "rows", "seconds", "cache"):
            t.add_column(col, justify="right" if col in ("rows", "seconds") else "left")
        for b in kb.table_builds:
            t.add_row(b.relation, f"{b.rows:,}", f"{b.seconds:.3f}", "reused" if b.reused else "built")
        console.print(t)
    style = "bold red" if errors else "bold green"
    console.print(f"[{style}]{errors} error(s), {warnings} warning(s)[/] in {len(kb.program.modules)} files, "
                  f"{len(kb.program.decls)} relations, {rules} rules")
    return EXIT_FAIL if errors else EXIT_OK


def _from_cwd(diag, root: Path):
    """KB paths are shown from the KB's name (kb/...); on the terminal, point at the file as
    seen from the working directory so editors can open it."""
    import dataclasses
    on_disk = root.resolve().parent / diag.location.path
    try:
        shown = on_disk.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        shown = on_disk.as_posix()
    return dataclasses.replace(diag, location=dataclasses.replace(diag.location, path=shown))


def _source_line(kb, root: Path):
    def get(path: str, line: int) -> str | None:
        kb_path = (Path(path).resolve().relative_to(root.resolve().parent).as_posix()
                   if Path(path).resolve().is_relative_to(root.resolve().parent) else path)
        text = kb.program.source_line(kb_path, line)
        if text is None and line > 0 and not path.endswith(".gz"):
            try:
                with open(path, encoding="utf-8") as fh:
                    for i, raw in enumerate(fh, 1):
                        if i == line:
                            return raw.rstrip("\n")
            except OSError:
                return None
        return text
    return get


def _load_claims_or_exit(path: Path):
    from engine.claims import ClaimError, ClaimFileError, load_claims
    try:
        return load_claims(path)
    except FileNotFoundError:
        err.print(f"[bold red]{path}: no such file[/]")
    except OSError as exc:
        err.print(f"[bold red]{path}: cannot read: {exc.strerror}[/]")
    except (ClaimFileError, ClaimError) as exc:
        err.print("[bold red]The claim file cannot be used:[/]")
        err.print(str(exc), highlight=False)
    sys.exit(EXIT_INPUT)


@main.command()
@click.argument("claim_file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--line", "line_no", type=int, default=None, help="Only this claim line.")
@click.option("--why-not", "why_not", metavar="RULE", default=None,
              help="Why RULE did not fire for --line N: the first condition that failed.")
@click.option("--no-proofs", is_flag=True, help="Leave out the proof trees (and the `because` sentences built from them).")
@click.option("--no-remedies", is_flag=True, help="Do not search for claim changes that would pay.")
@click.option("--trace", is_flag=True, help="Text output: also print each reason's full derivation.")
@KB_OPTION
def explain(claim_file: Path, fmt: str, line_no: int | None, why_not: str | None, no_proofs: bool,
            no_remedies: bool, trace: bool, kb_dir: Path | None) -> None:
    """Decide every line of a claim and say why: rule, facts, sources, denial codes, remedies.

    \b
    Examples:
      policykb explain examples/office-96372-with-em.json
      policykb explain claim.json --format json --line 2
      policykb explain claim.json --line 2 --trace     # with the full proof
      policykb explain claim.json --line 1 --why-not inj.facility_em
    """
    from engine.render.text import render_claim, render_why_not
    claims = _load_claims_or_exit(claim_file)
    if why_not and line_no is None:
        err.print("[bold red]--why-not needs --line N[/]")
        sys.exit(EXIT_INPUT)
    kb = _open_kb(kb_dir)
    for claim in claims:
        if line_no is not None and all(ln.line != line_no for ln in claim.lines):
            err.print(f"[bold red]claim {claim.id} has no line {line_no}[/]")
            sys.exit(EXIT_INPUT)
        if why_not:
            if why_not not in kb.adjudicator.rules:
                err.print(f"[bold red]no rule with id {why_not}[/] (see `policykb docs` or kb/)")
                sys.exit(EXIT_INPUT)
            w = kb.why_not(claim, line_no, why_not)
            if fmt == "json":
                out.print_json(json.dumps({"claim": claim.id, "line": line_no, **w.to_dict()}, sort_keys=True))
            else:
                render_why_not(w, line_no, out)  # type: ignore[arg-type]
            continue
        result = kb.adjudicate(claim, proofs=not no_proofs, remedies=not no_remedies)
        if fmt == "json":
            data = result.to_dict()
            if line_no is not None:
                data["lines"] = [ln for ln in data["lines"] if ln["line"] == line_no]
            sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        else:
            render_claim(result, out, only_line=line_no, trace=trace)


@main.command()
@click.argument("in_file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write results here (JSONL); default standard output.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--proofs", is_flag=True, help="Include proof trees in each result (slower).")
@KB_OPTION
def scrub(in_file: Path, output: Path | None, workers: int, proofs: bool, kb_dir: Path | None) -> None:
    """Adjudicate a JSONL file of claims: one result line per input line, in order.

    A claim that cannot be read yields an error record naming its input line and field; the
    run goes on. Exit code 1 when any record failed.

    \b
    Example:
      policykb scrub examples/batch.jsonl -o results.jsonl --workers 2
    """
    from engine.api import make_worker
    from engine.batch import WorkerStartError, render_summary, run_batch
    from engine.kb import default_kb_dir
    if not in_file.is_file():
        err.print(f"[bold red]{in_file}: no such file[/]")
        sys.exit(EXIT_INPUT)
    _open_kb(kb_dir)  # fail fast, and warm the cache before workers start
    factory = functools.partial(make_worker, str(kb_dir or default_kb_dir()), None, proofs, False)
    try:
        summary = run_batch(in_file, output, workers=workers, make_worker=factory, progress=True)
    except WorkerStartError as exc:
        err.print(f"[bold red]workers could not start: {exc}[/]")
        sys.exit(EXIT_FAIL)
    except (OSError, ValueError) as exc:
        err.print(f"[bold red]{exc}[/]")
        sys.exit(EXIT_INPUT)
    render_summary(summary, err)
    sys.exit(summary.exit_code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Adjudication worker processes (each loads the KB once).")
@click.option("--max-body-bytes", type=click.IntRange(1), default=None, help="Larger bodies get 413 (default 1 MiB).")
@click.option("--max-lines", type=click.IntRange(1), default=None, help="Claims with more lines get 422 (default 50).")
@click.option("--max-units", type=click.IntRange(1), default=None, help="Lines with more units get 422 (default 9999, the claim format's own limit).")
@click.option("--reference-url", default=None, help="Where the reference site is published, for the page's links "
              "(default: build/html served at /reference/ when built).")
@KB_OPTION
def serve(host: str, port: int, workers: int, max_body_bytes: int | None, max_lines: int | None,
          max_units: int | None, reference_url: str | None, kb_dir: Path | None) -> None:
    """Serve the HTTP API (/v1, /openapi.json, /docs) and the paste-a-claim page (/).

    \b
    Example:
      policykb serve --port 8080 --workers 2
      curl -s localhost:8080/v1/adjudicate -H 'Content-Type: application/json' \\
           --data @examples/office-96372-with-em.json
    """
    from engine.service.run import serve as run_service
    limits = {k: v for k, v in (("max_body_bytes", max_body_bytes), ("max_lines", max_lines),
                                ("max_units", max_units)) if v is not None}
    sys.exit(run_service(host, port, workers=workers, kb_dir=kb_dir, reference_url=reference_url, **limits))


@main.command()
@click.option("--check", "check_only", is_flag=True,
              help="Exit 1 when the pages are stale instead of writing them (by default: the golden pages in site/).")
@click.option("--goldens", is_flag=True,
              help="Only the generated pages the directory already holds (default directory: site/).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: build/site, or site/ with --check or --goldens).")
@KB_OPTION
def docs(check_only: bool, goldens: bool, out_dir: Path | None, kb_dir: Path | None) -> None:
    """Write the site's generated pages into a directory, or check site/'s goldens.

    \b
    `mkdocs build` generates the same pages itself (see mkdocs.yml); the golden
    pages in site/ are the few the tests compare. A KB with errors gets the
    checker's report and exit code 1, as with `policykb check`.

    \b
    Examples:
      mkdocs build --strict && python -m http.server -d build/html
      POLICYKB_DOCS_KB=/path/to/kb mkdocs build --strict
      policykb docs --out /tmp/pages
      policykb docs --check          # the golden pages in site/ are fresh
      policykb docs --goldens        # refresh them
    """
    from engine.docs.build import generate
    from engine.docs.scenarios import ScenarioError
    from engine.kb import default_kb_dir
    root = kb_dir or default_kb_dir()
    if out_dir is None:
        goldens = goldens or check_only
        out_dir = Path(root).resolve().parent / ("site" if goldens else "build/site")
    try:
        report = generate(root, out_dir, check=check_only, goldens=goldens)
    except DiagnosticError:
        if Path(root).is_dir():
            err.print(f"[bold red]{root}: the KB has errors, so no site was generated:[/]")
        sys.exit(_report_check(root, err) or EXIT_FAIL)
    except ScenarioError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(EXIT_INPUT)
    shown = _shown(out_dir)
    if check_only and report.stale:
        err.print(f"[bold red]{shown} is stale: {len(report.stale)} file(s) differ; run `policykb docs"
                  f"{' --goldens' if goldens else ''}`[/]")
        for p in report.stale[:20]:
            err.print(f"  {p}")
        if len(report.stale) > 20:
            err.print(f"  … and {len(report.stale) - 20} more")
        sys.exit(EXIT_FAIL)
    if check_only:
        out.print(f"[bold green]{shown} is up to date[/] ({report.pages} pages, {report.files} files)")
    else:
        out.print(f"[bold green]{report.pages} pages[/] in {shown}: {len(report.written)} file(s) written, "
                  f"{len(report.removed)} removed")


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return path.as_posix()


if __name__ == "__main__":
    main()
