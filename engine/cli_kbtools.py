"""`policykb fmt`, `policykb rules`, `policykb code` and `policykb import`: parse arguments,
call engine.fmt / engine.lookup / engine.importers.quarterly, render for a person.

Registered on the main group in engine/cli.py. Exit codes as there: 0 success; 1 a check
failed (files would change, a row is bad); 2 unusable input (unknown rule or code, no file).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from engine.cachedir import Entry

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2  # as in engine/cli.py
KB_OPTION = click.option(
    "--kb",
    "kb_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="KB directory (default: the bundled kb/, or $POLICYKB_KB).",
)


def _cli() -> Any:
    """engine.cli's consoles and helpers (imported late: engine.cli registers these commands)."""
    from engine import cli

    return cli


# --- fmt ------------------------------------------------------------------------------------


@click.command("fmt")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--check", "check_only", is_flag=True, help="Change nothing; list the files that would change (exit 1).")
def fmt(paths: tuple[Path, ...], check_only: bool) -> None:
    """Format .dl files in the canonical style (the bundled KB's): one statement per line,
    comments and doc comments kept in place. With no PATHS, the bundled KB.

    \b
    Examples:
      policykb fmt kb/                 # rewrite what is not canonical
      policykb fmt --check kb/         # exit 1 listing the files that would change
    """
    from engine.fmt import format_paths
    from engine.kb import default_kb_dir

    out, err, _shown = _cli().out, _cli().err, _cli()._shown

    targets = list(paths) or [default_kb_dir()]
    missing = [p for p in targets if not p.exists()]
    if missing:
        for p in missing:
            err.print(f"[bold red]{p}: no such file or directory[/]")
        sys.exit(EXIT_INPUT)
    results = format_paths(targets, write=not check_only)
    broken = [r for r in results if r.error is not None]
    changed = [r for r in results if r.changed]
    for r in broken:
        assert r.error is not None
        for d in r.error.diagnostics[:5]:
            err.print(d.header(), highlight=False)
        err.print(f"[bold red]{_shown(r.path)}: not formatted (it does not parse)[/]")
    for r in changed:
        (err if check_only else out).print(f"{'would reformat' if check_only else 'reformatted'} {_shown(r.path)}")
    verb = "would be reformatted" if check_only else "reformatted"
    style = "bold red" if check_only and changed else "bold green"
    out.print(
        f"[{style}]{len(changed)} file(s) {verb}[/], {len(results) - len(changed) - len(broken)} unchanged"
        + (f", [bold red]{len(broken)} with syntax errors[/]" if broken else "")
    )
    if broken:
        sys.exit(EXIT_INPUT)
    sys.exit(EXIT_FAIL if check_only and changed else EXIT_OK)


# --- rules ----------------------------------------------------------------------------------


@click.command("rules")
@click.argument("rule_id", required=False)
@click.option("--kind", default=None, help="Only rules of this @kind (e.g. ncci, policy, place_of_service).")
@KB_OPTION
def rules(rule_id: str | None, kind: str | None, kb_dir: Path | None) -> None:
    """List the rules (id, kind, title, denial codes), or show one with its source text,
    citation, annotations and the policy cases that mention it.

    \b
    Examples:
      policykb rules
      policykb rules --kind ncci
      policykb rules inj.facility_em
    """
    from engine import lookup

    kb = _cli()._open_kb(kb_dir)
    out, err = _cli().out, _cli().err
    if rule_id is None:
        listed = lookup.rules(kb, kind)
        if not listed:
            kinds = sorted({r["kind"] for r in lookup.rules(kb)})
            err.print(f"[bold red]no rule of kind {kind!r}[/]; the kinds are {', '.join(kinds)}")
            sys.exit(EXIT_INPUT)
        out.print(rules_table(listed))
        out.print(f"{len(listed)} rule(s)")
        return
    try:
        info = lookup.rule(kb, rule_id)
    except lookup.UnknownName as exc:
        _unknown(exc, "policykb rules")
    render_rule(out, info, lookup.cases_mentioning(kb.kb.root, rule_id))


def _denial(r: dict[str, Any]) -> str:
    return " ".join(x for x in [f"{r['group']}-{r['carc']}" if r["carc"] else r["group"], *r["rarc"]] if x)


def rules_table(listed: list[dict[str, Any]]) -> Table:
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("id", "kind", "outcome", "denial codes", "title"):
        t.add_column(col, no_wrap=col != "title")
    for r in listed:
        t.add_row(f"[cyan]{r['id']}[/]", r["kind"], r["outcome"], _denial(r), r["title"])
    return t


def render_rule(console: Console, info: dict[str, Any], cases: list[Any]) -> None:
    console.print(f"[bold cyan]{info['id']}[/]  [bold]{info['title']}[/]")
    facts = [
        ("kind", info["kind"]),
        ("outcome", info["outcome"]),
        ("denial codes", _denial(info) or "-"),
        ("defined at", info["location"]),
    ]
    for key, value in facts:
        console.print(f"  [dim]{key:<13}[/] {value}", highlight=False)
    console.print("\n[bold]source[/]")
    for c in info["clauses"]:
        console.print(f"  [dim]{c['location']}[/]")
        for line in c["text"].splitlines():
            console.print(f"    {line}", highlight=False, markup=False)
    console.print("\n[bold]annotations[/]")
    width = max((len(a["key"]) for a in info["annotations"]), default=0) + 1
    for a in info["annotations"]:
        console.print(f"  [green]@{a['key']:<{width}}[/]", end="", highlight=False)
        console.print(a["value"], highlight=False, markup=False)
    if info["sources"]:
        console.print("\n[bold]citation[/]")
        for s in info["sources"]:
            console.print(f"  {s}", highlight=False, markup=False)
    console.print(f"\n[bold]policy cases[/] ({len(cases)})")
    if not cases:
        console.print("  [yellow]no policy case mentions this rule[/]")
    for case in cases:
        where = f"[dim]{case.path}:{case.line}[/]"
        expected = f" [dim]({case.expected})[/]" if case.expected else ""
        console.print(f"  {where} ", end="")
        console.print(case.name, highlight=False, markup=False, end="")
        console.print(expected)


def _unknown(exc: Any, listing: str) -> None:
    err = _cli().err
    hint = f"; did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else f"; `{listing}` lists them"
    if exc.kind == "code":
        hint = f"; did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else ""
    err.print(f"[bold red]{exc.detail}[/]{hint}", highlight=False)
    sys.exit(EXIT_INPUT)


# --- code -----------------------------------------------------------------------------------

PTP_SHOWN = 20  # partners listed per direction on a terminal unless --all or --limit


@click.command("code")
@click.argument("code")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help=f"PTP partners listed per direction (default {PTP_SHOWN} on a terminal, all when piped).",
)
@click.option("--all", "show_all", is_flag=True, help="List every PTP partner.")
@click.option(
    "--status",
    type=click.Choice(["all", "active", "deleted"]),
    default="all",
    help="Which PTP rows: active (no deletion date), deleted or all.",
)
@KB_OPTION
def code(code: str, limit: int | None, show_all: bool, status: str, kb_dir: Path | None) -> None:
    """What the KB knows of a code: description, category, its facts (MUE, add-on status ...),
    linked codes (add-on primaries), pair-edit (PTP) partners in both directions with dates and
    indicators, and the rules that can decide a line with it.

    \b
    Examples:
      policykb code 96372
      policykb code 99213 --status active --limit 50
    """
    from engine import lookup

    kb = _cli()._open_kb(kb_dir)
    out = _cli().out
    shown = 10**9 if show_all else (limit or (PTP_SHOWN if out.is_terminal else 10**9))
    try:
        info = lookup.code(kb, code, lookup.Page(0, shown, status))
    except lookup.UnknownName as exc:
        _unknown(exc, "policykb code")
    render_code(out, info, lookup.deciding_rules(kb, info))


# NCCI's modifier indicator values, for the indicator column of a pair edit
_MODIFIER = {"0": "no modifier allowed", "1": "a modifier may bypass it", "9": "not applicable"}


def render_code(console: Console, info: dict[str, Any], deciding: list[dict[str, str]]) -> None:
    """The CLI twin of the site's code page; labels and texts come from the KB's `@docs` roles."""
    console.print(
        f"[bold cyan]{info['code']}[/]  {info['description'] or '[dim](no description in the KB)[/]'}", highlight=False
    )
    rows = [
        ("category", info["category"] or "-"),
        ("ranges", ", ".join(info["ranges"]) or "-"),
        ("in code lists", "yes" if info["known"] else "[yellow]no[/]"),
    ]
    rows += [(f["label"], escape(f["text"])) for f in info["facts"]]
    rows += [(link["label"], escape(_few(link["codes"]))) for link in info["links"]]
    width = max(14, *(len(k) for k, _v in rows))
    for key, value in rows:
        console.print(f"  [dim]{escape(key):<{width}}[/] {value}", highlight=False)
    for edit in info["edits"]:
        for direction, label in (("column_1", edit["first_label"]), ("column_2", edit["second_label"])):
            part = edit[direction]
            console.print(
                f"\n[bold]{escape(edit['title'])}, as {escape(label)}[/]: {part['total']:,} row(s), {part['active']:,} active"
            )
            if part["items"]:
                t = Table(box=None, header_style="bold", pad_edge=False)
                for col in ("partner", "effective", "deleted", "modifier", "rationale"):
                    t.add_column(col, no_wrap=col != "rationale")
                for p in part["items"]:
                    ind = p["modifier_indicator"]
                    mod = "-" if ind is None else f"{ind} ({_MODIFIER.get(str(ind), '?')})"
                    deleted = p["deletion_date"] or "[green]active[/]"
                    t.add_row(p["partner"], p.get("effective_date") or "-", deleted, mod, escape(p["rationale"]))
                console.print(t)
            if part["next_offset"] is not None:
                console.print(
                    f"  [dim]… {part['total'] - part['next_offset']:,} more; --all or --limit N lists them[/]"
                )
    console.print(f"\n[bold]rules that can decide it[/] ({len(deciding)})")
    for r in deciding:
        console.print(f"  [cyan]{r['id']}[/]  {r['title']} [dim]({r['how']})[/]", highlight=False)


def _few(codes: list[str], n: int = 12) -> str:
    if not codes:
        return "none listed"
    more = f" … and {len(codes) - n} more" if len(codes) > n else ""
    return ", ".join(codes[:n]) + more


# --- import ---------------------------------------------------------------------------------


@click.command("import")
@click.argument("kind", type=click.Choice(["ncci-ptp", "ncci-mue", "ncci-aoc", "hcpcs"]))
@click.argument("file", type=click.Path(path_type=Path))
@KB_OPTION
def import_release(kind: str, file: Path, kb_dir: Path | None) -> None:
    """Import a CMS quarterly release into the KB's tables: CSV, tab-separated or the
    fixed-width TXT layout, zipped or not. Every row is checked first (a bad row is named by its
    row number and nothing is written); the release replaces the table, PTP effective and
    deletion dates kept. Re-importing the same file changes nothing.

    \b
    Examples:
      policykb import ncci-ptp PTP-2024Q4-f1.zip
      policykb import ncci-mue mue_practitioner.csv --kb my-kb/
    """
    from engine.importers.quarterly import ReleaseError
    from engine.importers.quarterly import import_release as run_import
    from engine.kb import default_kb_dir

    out, err = _cli().out, _cli().err
    root = kb_dir or default_kb_dir()
    try:
        report = run_import(kind, file, root)
    except ReleaseError as exc:
        err.print(f"[bold red]{exc.path}: cannot import this {kind} release[/] (nothing was written):")
        for n, message in exc.problems[:20]:
            err.print(f"  {'row ' + str(n) + ': ' if n else ''}{message}", highlight=False, markup=False)
        if len(exc.problems) > 20:
            err.print(f"  … and {len(exc.problems) - 20} more")
        sys.exit(EXIT_INPUT)
    except OSError as exc:
        err.print(f"[bold red]{file}: cannot read: {exc.strerror or exc}[/]")
        sys.exit(EXIT_INPUT)
    render_import(out, report)
    next_step(out, report, root)


def render_import(console: Console, report: Any) -> None:
    console.print(f"[bold]{report.source.name}[/]: {report.rows_read:,} row(s) read ({report.layout} layout)")
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("table", "before", "after", "added", "removed", "changed"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for c in report.tables:
        t.add_row(
            f"{c.relation} [dim]({c.file.name})[/]",
            f"{c.before:,}",
            f"{c.after:,}",
            f"[green]{c.added:,}[/]" if c.added else "0",
            f"[red]{c.removed:,}[/]" if c.removed else "0",
            f"[yellow]{c.changed:,}[/]" if c.changed else "0",
        )
    console.print(t)
    if all(c.unchanged for c in report.tables):
        console.print("[bold green]nothing changed[/]: the KB already has this release")


def next_step(console: Console, report: Any, root: Path) -> None:
    """After an import that changed rows: how to see which claims the new rows decide
    differently (`policykb diff`, which needs the KB before the import: its git revision)."""
    if all(c.unchanged for c in report.tables):
        return
    from engine.diff import in_git_work_tree

    shown = _cli()._shown(root)
    if in_git_work_tree(root):
        console.print(
            f"next: [bold]policykb diff HEAD {escape(shown)}[/] lists the claims the new rows decide"
            " differently, by cause, with a witness claim for a change no claim shows"
        )
    else:
        console.print(
            f"{escape(shown)} is not in a git repository, so its tables before the import are gone: to see"
            " what a release changes, import into a copy of the KB and run [bold]policykb diff OLD NEW[/]"
        )


# --- cache ----------------------------------------------------------------------------------


@click.command("cache")
@click.option(
    "--prune", is_flag=True, help="Remove the files this KB does not use and that are older than --older-than."
)
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    default=14,
    show_default=True,
    help="Days since a file was written: younger ones are kept (another KB, e.g. a branch, may use them).",
)
@click.option("--dry-run", is_flag=True, help="With --prune: list what would go, remove nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@KB_OPTION
def cache(prune: bool, days: float, dry_run: bool, fmt: str, kb_dir: Path | None) -> None:
    """What the cache directory ($POLICYKB_CACHE_DIR, else ~/.cache/policykb) holds, by kind,
    and which of it the KB uses. Every edit of a table or rule leaves its old cache files behind
    (the PTP table's are ~250 MB); --prune removes those this KB does not use.

    \b
    Examples:
      policykb cache
      policykb cache --prune --dry-run
      policykb cache --prune --older-than 0     # keep only what this KB uses (and builds under way)
    """
    import json
    import time

    from engine import cachedir

    out = _cli().out
    kb = _cli()._open_kb(kb_dir)
    store = kb.kb.store
    found = cachedir.entries(store.cache_dir)
    used = cachedir.used_by(kb)
    doomed = cachedir.prunable(found, used, cachedir.cutoff(days)) if prune else []
    removed = doomed if dry_run else cachedir.prune(store.cache_dir, doomed)
    if removed and not dry_run:
        found = cachedir.entries(store.cache_dir)  # shown as it is now
    if fmt == "json":
        report = {
            "cache_dir": str(store.cache_dir),
            "files": [{"name": e.path.name, "kind": e.kind, "bytes": e.size, "used": e.path in used} for e in found],
            "removed" if not dry_run else "would_remove": [e.path.name for e in removed],
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    render_cache(out, store.cache_dir, found, used, removed, dry_run, days, time.time())


def render_cache(
    console: Console,
    cache_dir: Path,
    found: list[Entry],
    used: set[Path],
    removed: list[Entry],
    dry_run: bool,
    days: float,
    now: float,
) -> None:
    from engine import cachedir

    console.print(f"[bold]{escape(str(cache_dir))}[/]")
    t = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("kind", "files", "size", "used by this KB", "not used", f"not used, older than {days:g} d"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    old = cachedir.cutoff(days, now)
    for kind in cachedir.KINDS:
        of = [e for e in found if e.kind == kind]
        if not of:
            continue
        idle = [e for e in of if e.path not in used]
        t.add_row(
            kind,
            f"{len(of):,}",
            _size(sum(e.size for e in of)),
            _size(sum(e.size for e in of if e.path in used)),
            _size(sum(e.size for e in idle)),
            _size(sum(e.size for e in idle if e.mtime < old and kind != "lock")),
        )
    console.print(t)
    if removed:
        verb = "would remove" if dry_run else "removed"
        console.print(f"{verb} {len(removed):,} file(s), {_size(sum(e.size for e in removed))}")
        if dry_run:
            for e in removed:
                console.print(f"  {escape(e.path.name)}  [dim]{_size(e.size)}[/]")


def _size(n: float) -> str:
    """Bytes as a person reads them: 0 B, 24.6 kB, 229.7 MB (decimal units, as `ls -h --si`)."""
    if n < 1000:
        return f"{n:,.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:,.1f} {unit}"
