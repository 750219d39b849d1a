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
    from engine.kb import check_kb, default_kb_dir
    from engine.render.text import render_diagnostics
    root = kb_dir or default_kb_dir()
    try:
        with err.status("checking the KB (the first run loads the tables into the cache)…"):
            kb = check_kb(root)
    except DiagnosticError as exc:
        render_diagnostics(exc.diagnostics, lambda p, n: None, err)
        sys.exit(EXIT_INPUT)
    render_diagnostics([_from_cwd(d, root) for d in kb.diagnostics], _source_line(kb, root), out)
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
        out.print(t)
    style = "bold red" if errors else "bold green"
    out.print(f"[{style}]{errors} error(s), {warnings} warning(s)[/] in {len(kb.program.modules)} files, "
              f"{len(kb.program.decls)} relations, {rules} rules")
    sys.exit(EXIT_FAIL if errors else EXIT_OK)


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
@click.option("--no-proofs", is_flag=True, help="Leave out the proof trees.")
@click.option("--no-remedies", is_flag=True, help="Do not search for claim changes that would pay.")
@KB_OPTION
def explain(claim_file: Path, fmt: str, line_no: int | None, why_not: str | None, no_proofs: bool,
            no_remedies: bool, kb_dir: Path | None) -> None:
    """Decide every line of a claim and say why: rule, facts, sources, denial codes, remedies.

    \b
    Examples:
      policykb explain examples/office-96372-with-em.json
      policykb explain claim.json --format json --line 2
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
            w = kb.why_not(claim, line_no, why_not)  # type: ignore[arg-type]
            if fmt == "json":
                out.print_json(json.dumps({"claim": claim.id, "line": line_no, **w.to_dict()}, sort_keys=True))
            else:
                render_why_not(w, line_no, out)  # type: ignore[arg-type]
            continue
        result = kb.adjudicate(claim, proofs=not no_proofs, remedies=not no_remedies)
        if fmt == "json":
            data = result.to_dict()
            if line_no is not None:
                data["lines"] = [ln for ln in data["lines"] if ln["line"] == line_no]  # type: ignore[index]
            sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        else:
            render_claim(result, out, only_line=line_no, proofs=not no_proofs)


@main.command()
@click.argument("in_file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write results here (JSONL); default standard output.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--proofs", is_flag=True, help="Include proof trees in each result (slower).")
@click.option("--engine", type=click.Choice(["duckdb", "pydatalog", "both"]), default="duckdb", show_default=True,
              help="duckdb: whole chunks of claims at once; pydatalog: claim by claim; both: run the two "
                   "and fail any record they disagree on.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run: keep the complete records already "
                                            "in the output file and decide only the rest.")
@KB_OPTION
def scrub(in_file: Path, output: Path | None, workers: int, proofs: bool, engine: str, resume: bool,
          kb_dir: Path | None) -> None:
    """Adjudicate a JSONL file of claims: one result line per input line, in order.

    A claim that cannot be read yields an error record naming its input line and field; the
    run goes on. Exit code 1 when any record failed.

    \b
    Example:
      policykb scrub examples/batch.jsonl -o results.jsonl --workers 2
      policykb scrub claims.jsonl -o results.jsonl --engine both   # check the engines agree
      policykb scrub claims.jsonl -o results.jsonl --resume        # after an interruption
    """
    from engine.api import make_worker
    from engine.backends import CHUNK_CLAIMS
    from engine.batch import WorkerStartError, render_summary, run_batch
    from engine.kb import default_kb_dir
    if not in_file.is_file():
        err.print(f"[bold red]{in_file}: no such file[/]")
        sys.exit(EXIT_INPUT)
    kb = _open_kb(kb_dir)  # fail fast, and warm the cache before workers start
    factory = functools.partial(make_worker, str(kb_dir or default_kb_dir()), None, proofs, False, engine, workers)
    if engine != "pydatalog":
        from engine.backends.duckdb import prepare_tables
        prepare_tables(kb.kb)  # build the DuckDB table files once, before the workers start
    try:
        summary = run_batch(in_file, output, workers=workers, make_worker=factory, progress=True,
                            chunk=CHUNK_CLAIMS if engine != "pydatalog" else 16, resume=resume)
    except WorkerStartError as exc:
        err.print(f"[bold red]workers could not start: {exc}[/]")
        sys.exit(EXIT_FAIL)
    except (OSError, ValueError) as exc:
        err.print(f"[bold red]{exc}[/]")
        sys.exit(EXIT_INPUT)
    render_summary(summary, err)
    sys.exit(summary.exit_code)


@main.command()
@click.option("--sql", "show_sql", is_flag=True, help="Print the SQL the DuckDB backend runs for each step.")
@KB_OPTION
def compile(show_sql: bool, kb_dir: Path | None) -> None:
    """Show how the KB is evaluated: its steps in order (each a group of relations that is
    computed together), and with --sql the SQL of each step.

    \b
    Examples:
      policykb compile
      policykb compile --sql > kb.sql
    """
    from engine.backends.duckdb import describe_steps, program_sql
    kb = _open_kb(kb_dir)
    if show_sql:
        sys.stdout.write(program_sql(kb.kb) + "\n")
        return
    for title, steps in describe_steps(kb.kb):
        out.print(f"[bold]{title}[/]")
        for n, (relations, how) in enumerate(steps, 1):
            out.print(f"  {n:>3}  {', '.join(relations)}" + (f"  [dim]({how})[/]" if how else ""))


@main.command()
@click.option("--check", "check_only", is_flag=True, help="Exit 1 when site/ is stale instead of writing it.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("site"), show_default=True)
@KB_OPTION
def docs(check_only: bool, out_dir: Path, kb_dir: Path | None) -> None:
    """Generate the reference site's Markdown into site/ (build HTML with `mkdocs build`).

    \b
    Examples:
      policykb docs && mkdocs build --strict && python -m http.server -d build/html
      policykb docs --check
    """
    from engine.docs.build import generate
    from engine.kb import default_kb_dir
    report = generate(kb_dir or default_kb_dir(), out_dir, check=check_only)
    if check_only and report.stale:
        err.print(f"[bold red]site/ is stale: {len(report.stale)} page(s) differ; run `policykb docs`[/]")
        for p in report.stale[:20]:
            err.print(f"  {p}")
        sys.exit(EXIT_FAIL)
    out.print(f"[bold green]{report.pages} pages[/] {'checked' if check_only else 'written'} in {out_dir}")


if __name__ == "__main__":
    main()
