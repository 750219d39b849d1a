"""The `policykb` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 success; 1 the KB has errors, a check failed, or a batch had error records;
2 unusable input (missing file, malformed claim, bad arguments).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from engine.diagnostics import DiagnosticError, Severity

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2
EXIT_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool stopped by a closed pipe
KB_OPTION = click.option(
    "--kb",
    "kb_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="KB directory (default: the bundled kb/, or $POLICYKB_KB).",
)
INPUT_FORMAT_OPTION = click.option(
    "--input-format",
    type=click.Choice(["json", "x12", "fhir"]),
    default=None,
    help="Claim format: claim JSON, X12 5010 837P, FHIR R4 Claim/Bundle (default: detected).",
)
X12_OPTION = click.option(
    "--x12", "as_x12", is_flag=True, help="With --format 835: write an X12 5010 835 transaction instead of JSON."
)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Rich would exit 1 here; let `_Main` end with the closed-pipe exit code instead."""
        self.quiet = True
        raise BrokenPipeError


def _console(stderr: bool = False) -> Console:
    """Full width on a terminal; a wide fixed width when piped, so trees are never cropped."""
    c = _Console(stderr=stderr, highlight=False)
    return c if c.is_terminal else _Console(stderr=stderr, highlight=False, width=200)


out = _console()
err = _console(stderr=True)


class _Main(click.Group):
    """Ends quietly when standard output is a closed pipe (`policykb explain ... | head`):
    no traceback, no message, the exit code a shell gives a tool stopped by SIGPIPE."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # inside the try: a closed pipe fails here, not at exit
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush too
            ctx.exit(EXIT_PIPE)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="policykb")
def main() -> None:
    """PolicyKB: medical-billing policy as Datalog.

    \b
    Examples:
      policykb check kb/                               # check the KB, every problem at once
      policykb explain examples/office-96372-with-em.json
      policykb explain claim.json --line 2 --why-not ncci.ptp
      policykb scrub claims.jsonl -o results.jsonl --workers 2
      policykb test --coverage                         # the policy cases, with what they leave untouched
      policykb diff HEAD kb/                           # what an edit changes, with witness claims
      policykb serve --port 8080                       # the HTTP API and the paste-a-claim page
    """


def _open_kb(kb_dir: Path | None):
    from engine.api import PolicyKB
    from engine.progress import CacheProgress
    from engine.store import default_cache_dir

    try:
        with CacheProgress(err, default_cache_dir()) as progress:
            return PolicyKB.open(kb_dir, progress=progress)
    except DiagnosticError as exc:
        err.print(f"[bold red]The KB has {len(exc.diagnostics)} error(s); run `policykb check` to see them.[/]")
        for d in exc.diagnostics[:5]:
            err.print(d.header(), highlight=False)
        sys.exit(EXIT_FAIL)


@main.command()
@click.argument("kb_dir", type=click.Path(path_type=Path), required=False)
@click.option("--verbose", "-v", is_flag=True, help="Also list the tables loaded and what they cost.")
@click.option("--strict", is_flag=True, help="Treat lint warnings as errors (exit 1 when there are any).")
def check(kb_dir: Path | None, verbose: bool, strict: bool) -> None:
    """Check a KB: syntax, declarations, arity, types, safety, stratification, annotations,
    tables, then lint (rules without cases, that never fire or are shadowed, code ranges,
    unknown codes, overrides without precedence, remedies). Prints every problem as
    path:line:col: error[CODE]: message with the source line.

    \b
    Example:
      policykb check kb/
      policykb check kb/ --strict                      # warnings fail too
    """
    from engine.kb import default_kb_dir

    sys.exit(_report_check(kb_dir or default_kb_dir(), out, verbose, strict))


def _report_check(root: Path, console: Console, verbose: bool = False, strict: bool = False) -> int:
    """Check the KB at `root`, print every problem to `console`; the exit code."""
    from engine.kb import check_kb
    from engine.progress import CacheProgress
    from engine.render.text import render_diagnostics
    from engine.store import default_cache_dir

    try:
        with (
            err.status("checking the KB (the first run loads the tables into the cache)…") as status,
            CacheProgress(err, default_cache_dir(), status) as progress,
        ):
            kb = check_kb(root, progress=progress)
    except DiagnosticError as exc:
        render_diagnostics(exc.diagnostics, lambda p, n: None, err)
        return EXIT_INPUT
    from engine.lint import lint_kb

    diags = sorted([*kb.diagnostics, *lint_kb(kb)], key=lambda d: d.sort_key())
    if strict:
        import dataclasses

        diags = [dataclasses.replace(d, severity=Severity.ERROR) for d in diags]
    render_diagnostics([_from_cwd(d, root) for d in diags], _source_line(kb, root), console)
    errors = sum(d.is_error for d in diags)
    warnings = len(diags) - errors
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
    console.print(
        f"[{style}]{errors} error(s), {warnings} warning(s)[/] in {len(kb.program.modules)} files, "
        f"{len(kb.program.decls)} relations, {rules} rules"
    )
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
        kb_path = (
            Path(path).resolve().relative_to(root.resolve().parent).as_posix()
            if Path(path).resolve().is_relative_to(root.resolve().parent)
            else path
        )
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


def _load_claims_or_exit(path: Path, input_format: str | None = None):
    """The claims of a file (`-`: standard input) in any format, and whether it held several."""
    from engine.claims import ClaimError, ClaimFileError
    from engine.formats import read_claims_any

    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        return read_claims_any(data, name, input_format)  # type: ignore[arg-type]
    except FileNotFoundError:
        err.print(f"[bold red]{name}: no such file[/]")
    except OSError as exc:
        err.print(f"[bold red]{name}: cannot read: {exc.strerror}[/]")
    except (ClaimFileError, ClaimError) as exc:
        err.print("[bold red]The claim file cannot be used:[/]")
        err.print(str(exc), highlight=False, markup=False)
    sys.exit(EXIT_INPUT)


@main.command(name="test")
@click.argument("kb_dir", type=click.Path(path_type=Path), required=False)
@click.option(
    "--coverage",
    "with_coverage",
    is_flag=True,
    help="Also report rules that never fire or have no near miss, untouched relations and table rows.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--verbose", "-v", is_flag=True, help="Also list the cases that pass.")
def test_cmd(kb_dir: Path | None, with_coverage: bool, fmt: str, verbose: bool) -> None:
    """Run the policy cases (**/*.cases.json beside the rules). Exit 1 when a case fails.

    \b
    Examples:
      policykb test                        # the bundled kb/
      policykb test my_kb/ --coverage      # with rule, relation and table-row coverage
      policykb test --coverage --format json > coverage.json
    """
    from engine.kb import default_kb_dir
    from engine.render.testing import render_report
    from engine.testing import CaseFileError, run

    root = kb_dir or default_kb_dir()
    if not Path(root).is_dir():
        err.print(f"[bold red]{root}: no such KB directory[/]")
        sys.exit(EXIT_INPUT)
    kb = _open_kb(root)
    try:
        report = run(kb, Path(root), with_coverage=with_coverage)
    except CaseFileError as exc:
        err.print(f"[bold red]{exc}[/]", highlight=False)
        sys.exit(EXIT_INPUT)
    if fmt == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        render_report(report, out, verbose=verbose)
    sys.exit(EXIT_FAIL if report.failed else EXIT_OK)


@main.command()
@click.argument("claim_file", type=click.Path(path_type=Path, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "fhir", "835"]),
    default="text",
    show_default=True,
    help="fhir: a FHIR R4 ClaimResponse; 835: CAS/LQ adjustments per line.",
)
@X12_OPTION
@INPUT_FORMAT_OPTION
@click.option("--line", "line_no", type=int, default=None, help="Only this claim line.")
@click.option(
    "--why-not",
    "why_not",
    metavar="RULE",
    default=None,
    help="Why RULE did not fire for --line N: the first condition that failed.",
)
@click.option(
    "--no-proofs", is_flag=True, help="Leave out the proof trees (and the `because` sentences built from them)."
)
@click.option("--no-remedies", is_flag=True, help="Do not search for claim changes that would pay.")
@click.option("--trace", is_flag=True, help="Text output: also print each reason's full derivation.")
@KB_OPTION
def explain(
    claim_file: Path,
    fmt: str,
    as_x12: bool,
    input_format: str | None,
    line_no: int | None,
    why_not: str | None,
    no_proofs: bool,
    no_remedies: bool,
    trace: bool,
    kb_dir: Path | None,
) -> None:
    """Decide every line of a claim and say why: rule, facts, sources, denial codes, remedies.

    CLAIM_FILE holds one claim object or an array of them; `-` reads standard input. With
    --format json, a file holding an array gives one JSON array of results.

    \b
    Examples:
      policykb explain examples/office-96372-with-em.json
      policykb explain claim.json --format json --line 2
      policykb explain claim.json --line 2 --trace     # with the full proof
      policykb explain claim.json --line 1 --why-not inj.facility_em
      cat claim.json | policykb explain - --format json
      policykb explain examples/x12/office-96372-with-em.x12 --format 835 --x12
      policykb explain examples/fhir/office-96372-with-em.json --format fhir
    """
    from engine.render.text import render_claim, render_why_not

    if as_x12 and fmt != "835":
        err.print("[bold red]--x12 goes with --format 835[/]")
        sys.exit(EXIT_INPUT)
    if why_not and fmt in ("fhir", "835"):
        err.print("[bold red]--why-not answers in text or json, not as a claim response[/]")
        sys.exit(EXIT_INPUT)
    claims, is_array = _load_claims_or_exit(claim_file, input_format)
    if why_not and line_no is None:
        err.print("[bold red]--why-not needs --line N[/]")
        sys.exit(EXIT_INPUT)
    answers = []
    for claim in claims:
        if line_no is not None and all(ln.line != line_no for ln in claim.lines):
            err.print(f"[bold red]claim {claim.id} has no line {line_no}[/]")
            sys.exit(EXIT_INPUT)
    kb = _open_kb(kb_dir)
    if why_not and why_not not in kb.adjudicator.rules:
        err.print(f"[bold red]no rule with id {why_not}[/] (see `policykb docs` or kb/)")
        sys.exit(EXIT_INPUT)
    results: list[dict] = []
    for claim in claims:
        if why_not:
            assert line_no is not None  # checked above
            w = kb.why_not(claim, line_no, why_not)
            if fmt == "json":
                results.append({"claim": claim.id, "line": line_no, **w.to_dict()})
            else:
                render_why_not(w, line_no, out)
            continue
        result = kb.adjudicate(claim, proofs=not no_proofs, remedies=not no_remedies)
        if fmt in ("fhir", "835"):
            data = result.to_dict()
            if line_no is not None:
                data["lines"] = [ln for ln in data["lines"] if ln["line"] == line_no]
            answers.append((claim, data))
        elif fmt == "json":
            data = result.to_dict()
            if line_no is not None:
                data["lines"] = [ln for ln in data["lines"] if ln["line"] == line_no]
            results.append(data)
        else:
            render_claim(result, out, only_line=line_no, trace=trace)
    if fmt == "json":
        document = results if is_array else results[0]
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    if answers:
        from engine.formats.output import render_many

        sys.stdout.write(render_many(answers, fmt, x12=as_x12))  # type: ignore[arg-type]


@main.command()
@click.argument("in_file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write results here (JSONL); default standard output.",
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--dask",
    "dask_address",
    metavar="ADDRESS",
    default=None,
    help="Decide on a Dask cluster: a scheduler address (tcp://host:8786) or local:N for N worker "
    "processes here; a patient's claims stay in one partition, results come back in input order. "
    "With an address, --workers is the number of Dask workers per machine (they share its cores).",
)
@click.option("--proofs", is_flag=True, help="Include proof trees in each result (slower).")
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "pydatalog", "both"]),
    default="duckdb",
    show_default=True,
    help="duckdb: whole chunks of claims at once; pydatalog: claim by claim; both: run the two "
    "and fail any record they disagree on.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run: keep the complete records already in the output file and decide only the rest.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "fhir", "835"]),
    default="json",
    show_default=True,
    help="Each record as our result JSON, a FHIR R4 ClaimResponse, or 835 CAS/LQ adjustments.",
)
@X12_OPTION
@INPUT_FORMAT_OPTION
@KB_OPTION
def scrub(
    in_file: Path,
    output: Path | None,
    workers: int,
    dask_address: str | None,
    proofs: bool,
    engine: str,
    resume: bool,
    fmt: str,
    as_x12: bool,
    input_format: str | None,
    kb_dir: Path | None,
) -> None:
    """Adjudicate a JSONL file of claims: one result line per input line, in order.

    IN_FILE may be `-` for standard input, or a pipe.

    A claim that cannot be read yields an error record naming its input line and field; the
    run goes on. Exit code 1 when any record failed.

    \b
    Example:
      policykb scrub examples/batch.jsonl -o results.jsonl --workers 2
      policykb scrub claims.jsonl -o results.jsonl --engine both   # check the engines agree
      zcat claims.jsonl.gz | policykb scrub - -o results.jsonl       # claims on standard input
      policykb scrub claims.jsonl -o results.jsonl --resume        # after an interruption
      policykb scrub claims.jsonl -o results.jsonl --dask local:2  # a Dask cluster of 2 workers
      policykb scrub claims.jsonl -o results.jsonl --dask tcp://10.0.0.5:8786
      policykb scrub claims.x12 --format fhir -o responses.ndjson   # a multi-claim 837P
      policykb scrub bundle.json --format 835 --x12 -o answer.835   # a FHIR Bundle of Claims
    """
    from engine.api import make_worker, share_with_workers
    from engine.backends import CHUNK_CLAIMS
    from engine.batch import WorkerFactory, WorkerStartError, render_summary, run_batch
    from engine.kb import default_kb_dir

    if str(in_file) != "-" and not in_file.exists():
        err.print(f"[bold red]{in_file}: no such file[/]")
        sys.exit(EXIT_INPUT)
    if in_file.is_dir():
        err.print(f"[bold red]{in_file}: a directory, not a file of claims[/]")
        sys.exit(EXIT_INPUT)
    if as_x12 and fmt != "835":
        err.print("[bold red]--x12 goes with --format 835[/]")
        sys.exit(EXIT_INPUT)
    if resume and fmt != "json":
        err.print(
            "[bold red]--resume continues a run of result JSON records; it does not go with --format fhir or 835[/]"
        )
        sys.exit(EXIT_INPUT)
    if dask_address is not None:
        from engine.distributed import DistributedError, local_workers

        try:
            workers = local_workers(dask_address) or workers  # processes sharing this machine's cores
        except DistributedError as exc:
            err.print(str(exc), style="bold red", markup=False, emoji=False)
            sys.exit(EXIT_INPUT)
    kb = _open_kb(kb_dir)  # fail fast, and warm the cache before workers start
    root = str(kb_dir or default_kb_dir())
    share_with_workers(kb, root)  # the workers use it (forked) instead of loading the KB again
    factory: WorkerFactory = functools.partial(make_worker, root, None, proofs, False, engine, workers)
    if fmt != "json":
        from engine.formats.output import make_worker as format_worker

        factory = functools.partial(format_worker, fmt, root, None, proofs, engine, workers)  # type: ignore[arg-type]
    if engine != "pydatalog":
        from engine.backends.duckdb import prepare_tables

        prepare_tables(kb.kb)  # build the DuckDB table files once, before the workers start
    records_to = output
    if as_x12:
        import tempfile

        records_to = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    try:
        run = run_batch if dask_address is None else functools.partial(_run_on_dask, dask_address)
        summary = run(
            in_file,
            records_to,
            workers=workers,
            make_worker=factory,
            progress=True,
            chunk=CHUNK_CLAIMS if engine != "pydatalog" else 16,
            resume=resume,
            input_format=input_format,  # type: ignore[arg-type]
        )
    except WorkerStartError as exc:
        err.print(f"[bold red]workers could not start: {exc}[/]")
        sys.exit(EXIT_FAIL)
    except BrokenPipeError:
        raise  # standard output closed by the reader: main ends quietly
    except (OSError, ValueError) as exc:
        err.print(f"[bold red]{_scrub_error(exc, in_file, output)}[/]")
        sys.exit(EXIT_INPUT)
    finally:
        if as_x12 and "summary" not in locals() and records_to is not None:
            records_to.unlink(missing_ok=True)  # the run failed: no 835 to write
    if as_x12:
        _write_835(records_to, output)  # type: ignore[arg-type]
    render_summary(summary, err)
    sys.exit(summary.exit_code)


def _run_on_dask(address: str, in_file: Path, records_to: Path | None, *, workers: int, chunk: int, **kwargs: Any):
    """`scrub --dask`: engine.distributed.run_distributed, called like run_batch (the cluster's
    workers replace `workers`; a chunk is a partition). A cluster that cannot be used exits 2,
    a partition it cannot decide 1, each with the reason."""
    from engine.distributed import DistributedError, PartitionFailed, run_distributed

    try:
        return run_distributed(in_file, records_to, address=address, partition=chunk, **kwargs)
    except DistributedError as exc:
        err.print(str(exc), style="bold red", markup=False, emoji=False)
        sys.exit(EXIT_FAIL if isinstance(exc, PartitionFailed) else EXIT_INPUT)


def _scrub_error(exc: Exception, in_file: Path, output: Path | None) -> str:
    """What stopped a scrub, for a person: an OSError raised while reading or writing (a full disk,
    a failing device) names no file by itself, so the message names both of scrub's."""
    if isinstance(exc, OSError) and exc.filename is None and exc.strerror:
        shown_in = "standard input" if str(in_file) == "-" else str(in_file)
        shown_out = "standard output" if output is None else str(output)
        return f"scrub stopped reading {shown_in} into {shown_out}: {exc.strerror} (errno {exc.errno})"
    return str(exc)


def _write_835(records: Path, output: Path | None) -> None:
    """The scrub's 835 records as one X12 835; unreadable claims are listed here instead."""
    from engine.formats.output import jsonl_to_835

    try:
        if output is None:
            skipped = jsonl_to_835(records, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as fh:
                skipped = jsonl_to_835(records, fh)
    finally:
        records.unlink()
    for rec in skipped:
        e = rec["error"]
        for p in e["problems"]:
            err.print(
                f"record {e['record']}: claim {e['claim'] or '?'}: {p['field']}: {p['message']}",
                highlight=False,
                markup=False,
            )
    if skipped:
        err.print(f"[bold red]{len(skipped)} record(s) could not be read and are not in the 835[/]")


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
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Adjudication worker processes (each loads the KB once).",
)
@click.option("--max-body-bytes", type=click.IntRange(1), default=None, help="Larger bodies get 413 (default 1 MiB).")
@click.option("--max-lines", type=click.IntRange(1), default=None, help="Claims with more lines get 422 (default 50).")
@click.option(
    "--max-units",
    type=click.IntRange(1),
    default=None,
    help="Lines with more units get 422 (default 9999, the claim format's own limit).",
)
@click.option(
    "--reference-url",
    default=None,
    help="Where the reference site is published, for the page's links "
    "(default: build/html served at /reference/ when built).",
)
@KB_OPTION
def serve(
    host: str,
    port: int,
    workers: int,
    max_body_bytes: int | None,
    max_lines: int | None,
    max_units: int | None,
    reference_url: str | None,
    kb_dir: Path | None,
) -> None:
    """Serve the HTTP API (/v1, /openapi.json, /docs) and the paste-a-claim page (/).

    \b
    Example:
      policykb serve --port 8080 --workers 2
      curl -s localhost:8080/v1/adjudicate -H 'Content-Type: application/json' \\
           --data @examples/office-96372-with-em.json
    """
    from engine.service.run import serve as run_service

    limits = {
        k: v
        for k, v in (("max_body_bytes", max_body_bytes), ("max_lines", max_lines), ("max_units", max_units))
        if v is not None
    }
    sys.exit(run_service(host, port, workers=workers, kb_dir=kb_dir, reference_url=reference_url, **limits))


@main.command()
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Exit 1 when the pages are stale instead of writing them (by default: the golden pages in site/).",
)
@click.option(
    "--goldens", is_flag=True, help="Only the generated pages the directory already holds (default directory: site/)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory (default: build/site, or site/ with --check or --goldens).",
)
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
        err.print(
            f"[bold red]{shown} is stale: {len(report.stale)} file(s) differ; run `policykb docs"
            f"{' --goldens' if goldens else ''}`[/]"
        )
        for p in report.stale[:20]:
            err.print(f"  {p}")
        if len(report.stale) > 20:
            err.print(f"  … and {len(report.stale) - 20} more")
        sys.exit(EXIT_FAIL)
    if check_only:
        out.print(f"[bold green]{shown} is up to date[/] ({report.pages} pages, {report.files} files)")
    else:
        out.print(
            f"[bold green]{report.pages} pages[/] in {shown}: {len(report.written)} file(s) written, "
            f"{len(report.removed)} removed"
        )


@main.command("diff")
@click.argument("old")
@click.argument("new")
@click.option(
    "--claims",
    "claims_file",
    type=click.Path(path_type=Path),
    default=None,
    help="A JSONL file of claims (default: every policy case and bundled example).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--candidates",
    type=click.IntRange(1, 100_000),
    default=300,
    show_default=True,
    help="Most candidate claims tried per witness search.",
)
@KB_OPTION
def diff_cmd(old: str, new: str, claims_file: Path | None, fmt: str, candidates: int, kb_dir: Path | None) -> None:
    """What a KB change does: rules, facts and table rows added, removed and changed; the corpus
    lines whose decision or reasons change, by cause; and a witness claim for each change no
    corpus line shows. OLD and NEW are KB directories or git revisions of the KB (--kb).

    \b
    Examples:
      policykb diff HEAD kb/                 # uncommitted changes to the bundled KB
      policykb diff main~1 main --format json
      policykb diff kb/ /tmp/kb-next --claims claims.jsonl
    """
    from engine.diff import DiffError, resolve_source, structural_diff
    from engine.kb import default_kb_dir
    from engine.render.impact import render_impact
    from engine.witness import default_corpus, impact, read_claims_jsonl

    base = kb_dir or default_kb_dir()
    sources = []
    try:
        for spec in (old, new):  # one at a time, so a failure still cleans up the first
            sources.append(resolve_source(spec, base))
        a, b = sources
        corpus = (
            read_claims_jsonl(claims_file)
            if claims_file
            else default_corpus([a.path, b.path], Path(base).resolve().parent / "examples")
        )
        with err.status("loading both KBs (a changed table is loaded into the cache once)…"):
            kb_old, kb_new = _open_kb(a.path), _open_kb(b.path)
        with err.status("comparing the two KBs…"):  # the programs the KBs opened with (parsed once, or cached)
            structure = structural_diff(kb_old.kb.program, kb_new.kb.program)
        with err.status(f"running {len(corpus)} claims under both KBs and searching for witnesses…"):
            result = impact(
                kb_old,
                kb_new,
                structure,
                corpus,
                old_name=f"{old}: {a.how}",
                new_name=f"{new}: {b.how}",
                budget=candidates,
            )
    except DiffError as exc:
        err.print(f"[bold red]{exc}[/]", highlight=False)
        sys.exit(EXIT_INPUT)
    finally:
        for s in sources:
            s.cleanup()
    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        render_impact(result, out)


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return path.as_posix()


from engine import cli_kbtools  # noqa: E402  (fmt, rules, code, import: they use the helpers above)

for _name in ("fmt", "rules", "code", "import_release", "cache"):
    main.add_command(getattr(cli_kbtools, _name))


if __name__ == "__main__":
    main()
