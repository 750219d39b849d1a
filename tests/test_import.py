"""`policykb import` on fixtures made from real rows of ../shared/data (tests/fixtures/import/,
made by make_fixtures.py): every layout of a kind gives the same table, the rows are the real
ones, a re-import is byte-identical, a bad row is named by its number, and the imported PTP
dates decide the 27380/27540 claims by date of service (expected from the edit: 27380/27540 was
deleted 2024-06-30, 27540/27380 is active; the NCCI policy cases say the same)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine.importers.quarterly import ReleaseError, import_release, read_table

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests/fixtures/import"
KINDS_FILES = {"ncci-ptp": "ptp", "ncci-mue": "mue", "ncci-aoc": "aoc", "hcpcs": "hcpcs"}
LAYOUTS = ("csv", "tsv", "txt", "zip")


def bare_kb(tmp_path: Path) -> Path:
    """The KB's declarations without its tables (an import creates them)."""
    kb = tmp_path / "kb"
    for dl in (ROOT / "kb").rglob("*.dl"):
        target = kb / dl.relative_to(ROOT / "kb")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dl, target)
    (kb / "tables").mkdir()
    return kb


def fixture_rows(name: str) -> list[dict[str, str]]:
    with open(FIX / f"{name}.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("kind", list(KINDS_FILES))
def test_every_layout_gives_the_same_bytes(kind: str, tmp_path: Path) -> None:
    outputs = []
    for layout in LAYOUTS:
        kb = bare_kb(tmp_path / layout)
        report = import_release(kind, FIX / f"{KINDS_FILES[kind]}.{layout}", kb)
        assert report.layout == {"csv": "csv", "tsv": "tsv", "txt": "fixed", "zip": "fixed"}[layout]
        outputs.append([c.file.read_bytes() for c in report.tables])
    assert all(o == outputs[0] for o in outputs)


def test_ptp_rows_are_the_real_rows_with_their_dates(tmp_path: Path) -> None:
    kb = bare_kb(tmp_path)
    report = import_release("ncci-ptp", FIX / "ptp.tsv", kb)
    _header, rows = read_table(report.tables[0].file)
    expected = sorted(
        (r["column_1"], r["column_2"], "", r["deletion_date"], r["modifier_indicator"], r["ptp_edit_rationale"])
        for r in fixture_rows("ptp")
    )
    assert sorted(rows) == expected
    assert ("27380", "27540", "", "2024-06-30", "1", "Standards of medical/surgical practice") in rows
    assert ("27540", "27380", "", "", "1", "Standards of medical/surgical practice") in rows


def test_imported_mue_and_aoc_rows_equal_the_bundled_tables(tmp_path: Path) -> None:
    """The bundled tables were built from the same CMS release by engine.importers.cms."""
    kb = bare_kb(tmp_path)
    for kind, name in (("ncci-mue", "mue"), ("ncci-aoc", "aoc")):
        report = import_release(kind, FIX / f"{name}.txt", kb)
        for change in report.tables:
            _h, imported = read_table(change.file)
            _h, bundled = read_table(ROOT / "kb/tables" / change.file.name)
            keys = {r[0] for r in imported}
            assert imported and imported == [r for r in bundled if r[0] in keys]


def test_hcpcs_continuation_records_rebuild_the_long_description(tmp_path: Path) -> None:
    kb = bare_kb(tmp_path)
    report = import_release("hcpcs", FIX / "hcpcs.txt", kb)
    _h, rows = read_table(report.tables[0].file)
    by_code = {r[0]: r for r in rows}
    src = {r["hcpcs_code"]: r for r in fixture_rows("hcpcs")}
    assert set(by_code) == set(src)
    for code, r in src.items():
        assert by_code[code][1:3] == (r["short_description"], r["long_description"])
        assert by_code[code][6:] == (r["date_added"], r["date_term"])
    assert len(src["A0080"]["long_description"]) > 80  # one that needed a continuation record


def test_reimport_changes_nothing_and_says_so(tmp_path: Path) -> None:
    kb = bare_kb(tmp_path)
    first = run("import", "ncci-aoc", str(FIX / "aoc.zip"), "--kb", str(kb))
    assert first.returncode == 0, first.stderr
    n_codes = len({r["add_on_code"] for r in fixture_rows("aoc")})
    assert "aoc_code" in first.stdout and f" {n_codes} " in first.stdout
    before = {p.name: p.read_bytes() for p in (kb / "tables").iterdir()}
    again = run("import", "ncci-aoc", str(FIX / "aoc.csv"), "--kb", str(kb))
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert {p.name: p.read_bytes() for p in (kb / "tables").iterdir()} == before


def test_the_next_step_after_a_change_is_the_diff(tmp_path: Path) -> None:
    """An import that changes rows says how to see what they change: `policykb diff HEAD KB` when
    the KB is in git (its state before the import is HEAD); outside git, that the old tables are
    gone. An import that changes nothing says nothing more."""
    kb = bare_kb(tmp_path)
    outside = run("import", "ncci-aoc", str(FIX / "aoc.zip"), "--kb", str(kb))
    assert outside.returncode == 0, outside.stderr
    assert "not in a git repository" in outside.stdout and "diff HEAD" not in outside.stdout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "kb"], ["commit", "-qm", "kb"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    release = tmp_path / "next.csv"
    lines = (FIX / "aoc.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    release.write_text("".join(lines[:-1]), encoding="utf-8")  # the next release drops a row
    inside = run("import", "ncci-aoc", str(release), "--kb", str(kb))
    assert inside.returncode == 0, inside.stderr
    assert f"policykb diff HEAD {kb}" in " ".join(inside.stdout.split())
    again = run("import", "ncci-aoc", str(release), "--kb", str(kb))
    assert "nothing changed" in again.stdout and "policykb diff" not in again.stdout


def test_summary_counts_added_removed_and_changed_rows(tmp_path: Path) -> None:
    kb = bare_kb(tmp_path)
    import_release("ncci-ptp", FIX / "ptp.csv", kb)
    lines = (FIX / "ptp.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    # the next "release": 27540/27380 gets deleted, one row goes, nothing new
    edited = [ln.replace("27540,27380,,", "27540,27380,2024-09-30,") for ln in lines]
    gone = next(i for i, ln in enumerate(edited) if ln.startswith("90471,G0008,"))
    del edited[gone]
    release = tmp_path / "next.csv"
    release.write_text("".join(edited), encoding="utf-8")
    report = import_release("ncci-ptp", release, kb)
    (change,) = report.tables
    assert (change.added, change.removed, change.changed) == (0, 1, 1)
    assert change.before == len(lines) - 1 and change.after == len(lines) - 2


@pytest.mark.parametrize(
    ("name", "text", "row", "words"),
    [
        (
            "bad_mi.csv",
            "column_1,column_2,deletion_date,modifier_indicator,ptp_edit_rationale\n"
            "20610,96372,,1,Standards of medical/surgical practice\n27380,27540,2024-06-30,7,Standards\n",
            3,
            "modifier_indicator",
        ),
        (
            "bad_date.tsv",
            "Column 1\tColumn 2\tEffective Date\tDeletion Date\tModifier\tPTP Edit Rationale\n"
            "20610\t96372\t\t*\t1\tStandards\n27380\t27540\t\t2024-13-30\t1\tStandards\n",
            3,
            "deletion_date",
        ),
        (
            "bad_code.txt",
            "2061096372         *       1Standards\n273 027540         202406301Standards\n",
            2,
            "column_1",
        ),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_written(tmp_path: Path, name: str, text: str, row: int, words: str) -> None:
    kb = bare_kb(tmp_path)
    import_release("ncci-ptp", FIX / "ptp.csv", kb)
    table = kb / "tables/ncci_ptp_practitioner.csv.gz"
    before = table.read_bytes()
    bad = tmp_path / name
    bad.write_text(text, encoding="utf-8")
    r = run("import", "ncci-ptp", str(bad), "--kb", str(kb))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"row {row}: {words}" in r.stderr and "nothing was written" in r.stderr
    assert table.read_bytes() == before


def test_missing_columns_and_ambiguous_zips_are_refused(tmp_path: Path) -> None:
    kb = bare_kb(tmp_path)
    no_mai = tmp_path / "mue.csv"
    no_mai.write_text("hcpcs_cpt_code,mue_value,mue_rationale\n96372,4,Clinical: Data\n", encoding="utf-8")
    with pytest.raises(ReleaseError) as exc:
        import_release("ncci-mue", no_mai, kb)
    assert exc.value.problems[0][0] == 1 and "mai" in exc.value.problems[0][1]
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.txt", "x")
        zf.writestr("b.csv", "y")
    with pytest.raises(ReleaseError, match="one data file"):
        import_release("ncci-mue", two, kb)


def test_imported_ptp_dates_decide_by_date_of_service(tmp_path: Path) -> None:
    """A KB whose PTP table is the imported fixture decides the 27380/27540 claims like the
    policy cases expect, and an effective date in a release keeps an edit out before it."""
    kb = tmp_path / "kb"
    shutil.copytree(ROOT / "kb", kb)
    import_release("ncci-ptp", FIX / "ptp.csv", kb)
    cases = json.loads((ROOT / "kb/ncci/edits.cases.json").read_text(encoding="utf-8"))["cases"]
    chosen = [c for c in cases if c["name"].startswith("27380 + 27540 on ")]
    assert len(chosen) == 3

    def decisions(claim: dict) -> dict[str, str]:
        path = tmp_path / "claim.json"
        path.write_text(json.dumps(claim), encoding="utf-8")
        r = run("explain", str(path), "--format", "json", "--no-remedies", "--kb", str(kb))
        assert r.returncode in (0, 1), r.stderr
        return {str(ln["line"]): ln["decision"] for ln in json.loads(r.stdout)["lines"]}

    for case in chosen:
        assert decisions(case["claim"]) == {n: e["decision"] for n, e in case["expect"].items()}, case["name"]

    # a release in which 27540/27380 only takes effect on 2024-09-01: on 2024-08-01 no edit applies
    text = (FIX / "ptp.tsv").read_text(encoding="utf-8").replace("27540\t27380\t\t\t*", "27540\t27380\t\t20240901\t*")
    release = tmp_path / "later.tsv"
    release.write_text(text, encoding="utf-8")
    import_release("ncci-ptp", release, kb)
    after = next(c for c in chosen if "2024-08-01" in c["name"])
    assert decisions(after["claim"]) == {"1": "pay", "2": "pay"}
