"""The shipped reference tables in kb/tables: real CMS facts, their .dl declarations, and that
the importer reproduces them byte for byte (the last needs ../shared/data and skips without it)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
from functools import cache
from pathlib import Path

import pytest

from engine.importers import cms

ROOT = Path(__file__).resolve().parents[1]
KB = ROOT / "kb"
TABLES = KB / "tables"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@cache
def table(name: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """(header, rows) of a shipped table."""
    raw = (TABLES / name).read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    rows = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""))
    header = tuple(next(rows))
    return header, tuple(tuple(r) for r in rows)


def rows_by(name: str, *key: str) -> dict[tuple[str, ...], list[dict[str, str]]]:
    header, rows = table(name)
    idx = [header.index(k) for k in key]
    out: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for r in rows:
        out.setdefault(tuple(r[i] for i in idx), []).append(dict(zip(header, r, strict=False)))
    return out


# ---------------------------------------------------------------------------------- NCCI


def test_ptp_counts() -> None:
    header, rows = table("ncci_ptp_practitioner.csv.gz")
    assert header == ("column_1", "column_2", "effective_date", "deletion_date", "modifier_indicator", "rationale")
    assert len(rows) == 2_546_017
    assert sum(1 for r in rows if r[3] == "" or r[3] > "2024-07-01") == 1_669_820
    assert {r[2] for r in rows} == {""}  # the source has no effective dates
    assert list(rows) == sorted(rows, key=lambda r: (r[0], r[1], r[3], r))


def test_ptp_known_pairs() -> None:
    header, rows = table("ncci_ptp_practitioner.csv.gz")
    wanted = {("96372", "99213"), ("96372", "99211"), ("20610", "96372"), ("90471", "G0008"),
              ("27380", "27540"), ("27540", "27380")}
    ptp: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        if (r[0], r[1]) in wanted:
            ptp.setdefault((r[0], r[1]), []).append(dict(zip(header, r, strict=False)))

    def active(c1: str, c2: str) -> dict[str, str]:
        (row,) = [r for r in ptp[(c1, c2)] if r["deletion_date"] == ""]
        return row

    assert active("96372", "99213")["modifier_indicator"] == "1"
    assert active("96372", "99211")["modifier_indicator"] == "0"
    assert active("20610", "96372")["modifier_indicator"] == "1"
    assert active("90471", "G0008")
    assert [r["deletion_date"] for r in ptp[("27380", "27540")]] == ["2024-06-30"]
    assert active("27540", "27380")


def test_mue_values() -> None:
    mue = {k[0]: v[0] for k, v in rows_by("ncci_mue_practitioner.csv", "code").items()}
    assert len(mue) == 14_677
    assert (mue["96372"]["mue_value"], mue["96372"]["mai"]) == ("4", "3")
    assert mue["J3420"]["mue_value"] == "1"
    assert mue["J1071"]["mue_value"] == "400"
    assert (mue["90471"]["mue_value"], mue["90471"]["mai"]) == ("1", "2")
    assert mue["90472"]["mue_value"] == "8"


def test_aoc_90472_primaries() -> None:
    primaries = rows_by("ncci_aoc_primaries.csv", "add_on_code")["90472",]
    assert {r["primary_code"] for r in primaries} >= {"90460", "90471", "90473", "G0008", "G0009", "G0010"}
    assert {r["edit_type"] for r in primaries} == {"1"}
    assert rows_by("ncci_aoc_codes.csv", "add_on_code")["90472",][0]["edit_type"] == "1"
    _, rows = table("ncci_aoc_primaries.csv")
    assert all(r[1] != "CCCCC" for r in rows)


# ---------------------------------------------------------------------------------- code lists


def test_pos_settings() -> None:
    pos = {k[0]: v[0] for k, v in rows_by("pos.csv", "pos").items()}
    assert len(pos) == 99
    assert pos["22"]["setting"] == "facility"
    assert pos["11"]["setting"] == "non_facility"
    facility = {p for p, r in pos.items() if r["setting"] == "facility"}
    assert facility == {"02", "06", "08", "19", "21", "22", "23", "24", "26", "31", "34", "41", "42",
                        "51", "52", "53", "56", "61"}


def test_pfs_indicators() -> None:
    pfs = rows_by("pfs_indicators.csv.gz", "code", "modifier")
    assert pfs["96372", ""][0]["facility_na"] == "NA"
    assert pfs["96372", ""][0]["non_facility_na"] == ""
    assert pfs["27380", ""][0]["non_facility_na"] == "NA"
    assert "description" not in table("pfs_indicators.csv.gz")[0]


AMA_PHRASES = [
    "therapeutic, prophylactic, or diagnostic injection",
    "immunization administration",
    "includes percutaneous, intradermal",
    "chemotherapy administration, subcutaneous or intramuscular",
    "arthrocentesis, aspiration and/or injection",
    "for the evaluation and management of",
    "medically appropriate history and/or examination",
]


def test_cpt_codes_use_our_own_words() -> None:
    header, rows = table("cpt_codes.csv")
    assert header == ("code", "description", "category")
    for code, description, _ in rows:
        text = description.lower()
        assert not any(p in text for p in AMA_PHRASES), (code, description)
        assert len(description) <= 100, (code, description)
    allowed = {"em", "injection", "vaccine_admin", "chemo_admin", "hydration_infusion", "vaccine_product",
               "joint_injection", "surgery"}
    assert {r[2] for r in rows} <= allowed
    cats = {r[0]: r[2] for r in rows}
    for code, category in [("99201", "em"), ("99211", "em"), ("99215", "em"), ("96372", "injection"),
                           ("90471", "vaccine_admin"), ("90472", "vaccine_admin"), ("96401", "chemo_admin"),
                           ("96365", "hydration_infusion"), ("20610", "joint_injection"),
                           ("27380", "surgery"), ("27540", "surgery"),
                           ("90480", "vaccine_admin"), ("0001A", "vaccine_admin"),
                           ("90686", "vaccine_product"), ("91320", "vaccine_product")]:
        assert cats[code] == category


def test_hcpcs_betos_is_a_betos_code() -> None:
    """The 2025 dump lost BETOS for ~2,500 codes; the July 2024 value replaces the debris."""
    header, rows = table("hcpcs_level2.csv.gz")
    betos = {r[0]: r[header.index("betos")] for r in rows}
    assert all(b == "" or re.fullmatch(r"[A-Z][0-9][A-Z0-9]?", b) for b in betos.values())
    for code, want in [("J1071", "O1E"), ("Q5101", "O1E"), ("J7620", "D1G"), ("J9217", "O1D"),
                       ("Q2035", "O1G"), ("J3420", "O1E")]:
        assert betos[code] == want, code


def test_code_deletions() -> None:
    deleted = {k[0]: v[0] for k, v in rows_by("code_deletions.csv", "code").items()}
    assert deleted["99201"]["deleted_date"] == "2020-12-31"
    _, hcpcs = table("hcpcs_level2.csv.gz")
    terminated = {r[0]: r[7] for r in hcpcs if r[7]}
    assert terminated and all(deleted[c]["deleted_date"] == d for c, d in terminated.items())


def test_modifier_roles_name_real_modifiers() -> None:
    known = {r[0] for r in table("modifiers.csv")[1]}
    text = (KB / "codes" / "modifiers.dl").read_text(encoding="utf-8")
    roles = re.findall(r'^modifier_role\("([^"]*)", "([^"]*)"\)\.$', text, re.M)
    assert {m for m, _ in roles} <= known
    by_role: dict[str, set[str]] = {}
    for m, role in roles:
        by_role.setdefault(role, set()).add(m)
    assert by_role["distinct_service"] == {"59", "XE", "XS", "XP", "XU"}
    assert set().union(*(v for k, v in by_role.items() if k != "ncci_associated")) == by_role["ncci_associated"]


# ---------------------------------------------------------------------------------- declarations

DECL_RE = re.compile(r"^\.decl\s+(\w+)\s*\(([^)]*)\)", re.M)
INPUT_RE = re.compile(r'^\.input\s+(\w+)\s*\(\s*filename\s*=\s*"([^"]+)"', re.M)


def declared_types() -> dict[str, tuple[re.Pattern[str], bool]]:
    """Domain type -> (pattern, is a date) from kb/types.dl."""
    text = (KB / "types.dl").read_text(encoding="utf-8")
    out = {}
    for doc, name in re.findall(r"/\*\*(.*?)\*/\s*\.type\s+(\w+)", text, re.S):
        pattern = re.search(r"@pattern\s+(\S+)", doc)
        out[name] = (re.compile(pattern.group(1) if pattern else ".*"), "@format date" in doc)
    return out


def test_tables_match_their_declarations() -> None:
    """Every .input names a shipped file whose header is the declared attributes, and every
    value fits its declared type; every shipped file is declared."""
    types = declared_types()
    used = set()
    for dl in sorted(KB.rglob("*.dl")):
        text = dl.read_text(encoding="utf-8")
        decls = {name: [tuple(a.split(":")) for a in attrs.replace("\n", " ").split(",")]
                 for name, attrs in DECL_RE.findall(text)}
        for name, filename in INPUT_RE.findall(text):
            assert filename.startswith("tables/"), filename
            used.add(filename.removeprefix("tables/"))
            attrs = [(a.strip(), t.strip()) for a, t in decls[name]]
            header, rows = table(filename.removeprefix("tables/"))
            assert header == tuple(a for a, _ in attrs), (dl, name)
            for i, (attr, typ) in enumerate(attrs):
                values = {r[i] for r in rows}
                if typ == "number":
                    bad = {v for v in values if not re.fullmatch(r"-?[0-9]+", v)}
                elif typ == "symbol":
                    bad = set()
                else:
                    pattern, is_date = types[typ]
                    bad = {v for v in values if not pattern.search(v)}
                    if is_date:
                        for v in values - bad - {""}:
                            try:
                                dt.date.fromisoformat(v)
                            except ValueError:
                                bad.add(v)
                assert not bad, (name, attr, sorted(bad)[:5])
    assert used == {p.name for p in TABLES.iterdir()}


# ---------------------------------------------------------------------------------- reproducibility


def test_gzip_headers_carry_no_time_or_name() -> None:
    for p in TABLES.glob("*.gz"):
        head = p.read_bytes()[:10]
        assert head[3] & 0x08 == 0, p  # no FNAME field
        assert head[4:8] == b"\0\0\0\0", p  # mtime 0


def test_importer_reproduces_shipped_tables(tmp_path: Path) -> None:
    if not DATA.is_dir():
        pytest.skip(f"raw data not available at {DATA}")
    cms.run(DATA, tmp_path)
    built = sorted(p.name for p in tmp_path.iterdir())
    assert built == sorted(p.name for p in TABLES.iterdir())
    for name in built:
        assert (tmp_path / name).read_bytes() == (TABLES / name).read_bytes(), name
