"""Build the reference tables in kb/tables from the raw CMS / X12 files.

The KB has to load in a fresh clone that has no ../shared checkout, so the tables are shipped
in the repository; this module is how they were made and how to refresh them:

    python -m engine.importers.cms --data ../shared/data --out kb/tables

Output is byte-reproducible (sorted rows, `\\n` line endings, minimal quoting, UTF-8, gzip with
mtime 0), so a re-run on the same inputs gives a clean `git diff`. Every cell is text; a missing
value is the empty string. No CPT descriptor text is copied (it is AMA-licensed): the CPT codes
the policy rules use get short descriptions written for this project (`CPT_DESCRIPTIONS`).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

# Raw inputs, relative to --data.
PTP_SRC = "ncci_ptp/medicare_ptp_practitioner_2024q3.csv.gz"
MUE_SRC = "ncci_mue/medicare_mue_practitioner_2024q3.csv"
AOC_SRC = "ncci_aoc/medicare_aoc_2024q3.csv"
POS_SRC = "place_of_service/place_of_service_codes.csv"
HCPCS_2025_SRC = "hcpcs/hcpcs_level2_2025_oct.csv"
HCPCS_2024_SRC = "hcpcs/hcpcs_level2_2024_jul.csv"
MOD_2024_SRC = "modifiers/modifiers_cpt_hcpcs_2024.csv"
MOD_2025_SRC = "modifiers/hcpcs_level2_modifiers_2025_oct.csv"
PFS_SRC = "pfs_rvu/pprrvu_2025_oct_rvu25d.csv"
CARC_SRC = "carc_rarc/carc.csv"
RARC_SRC = "carc_rarc/rarc.csv"
GROUP_SRC = "carc_rarc/claim_adjustment_group_codes.csv"

CODE_RE = re.compile(r"^([0-9]{4}[0-9A-Z]|[A-Z][0-9]{4})$")
MODIFIER_RE = re.compile(r"^[0-9A-Z]{2}$")
ISO_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

# CMS writes "no deletion" as 9999-12-31 in some exports; the KB uses "" for it.
NO_DATE = "9999-12-31"
AOC_PLACEHOLDER = "CCCCC"  # CMS's "no primary code listed" marker (type 2, some type 3)

POS_SETTING = {"Facility": "facility", "Non-Facility": "non_facility", "Unassigned": "unassigned"}


class DataError(Exception):
    """The raw data is not what the importer expects; refuse rather than ship a bad table."""


# --------------------------------------------------------------------------------------------
# Reading and writing


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a UTF-8 CSV (optionally gzipped) as dicts keyed by the header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)


# The KB tables' CSV headers (the quarterly importer writes the same tables).
PTP_HEADER = ("column_1", "column_2", "effective_date", "deletion_date", "modifier_indicator", "rationale")
MUE_HEADER = ("code", "mue_value", "mai", "rationale")
AOC_CODE_HEADER = ("add_on_code", "edit_type")
AOC_PRIMARY_HEADER = ("add_on_code", "primary_code", "edit_type")
HCPCS_HEADER = (
    "code",
    "short_description",
    "long_description",
    "pricing_indicator",
    "coverage_code",
    "betos",
    "added_date",
    "termination_date",
)


def render_csv(header: list[str], rows: Iterable[tuple[str, ...]]) -> bytes:
    """One CSV document: header, rows as given, `\\n` endings, minimal quoting, UTF-8."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    for row in rows:
        if len(row) != len(header):
            raise DataError(f"row {row!r} does not fit header {header!r}")
        w.writerow(row)
    return buf.getvalue().encode("utf-8")


def write_table(out: Path, name: str, header: list[str], rows: list[tuple[str, ...]]) -> int:
    """Write rows (already sorted by the caller) to out/name; gzip when name ends in .gz.

    gzip gets an empty file name and mtime 0 so the bytes depend on the data only.
    Returns the number of bytes written.
    """
    data = render_csv(header, rows)
    if name.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
            gz.write(data)
        data = buf.getvalue()
    (out / name).write_bytes(data)
    return len(data)


def opt_date(value: str, what: str) -> str:
    """An ISO date or "" (CMS's 9999-12-31 and blanks both mean 'none')."""
    value = value.strip()
    if value in ("", NO_DATE, "*"):
        return ""
    if not ISO_DATE_RE.match(value):
        raise DataError(f"{what}: not an ISO date: {value!r}")
    return value


def check_code(code: str, what: str) -> str:
    if not CODE_RE.match(code):
        raise DataError(f"{what}: not a CPT/HCPCS code: {code!r}")
    return code


# --------------------------------------------------------------------------------------------
# NCCI


def build_ptp(data: Path) -> list[tuple[str, ...]]:
    """All practitioner PTP rows, deleted history included (rules pick by date of service).

    effective_date stays "" because the source lost it; the column is kept so a complete CMS
    file can fill it later without changing the relation.
    """
    intern = sys.intern
    rows: list[tuple[str, ...]] = []
    with gzip.open(data / PTP_SRC, "rt", encoding="utf-8", newline="") as f:
        r = csv.reader(f)
        header = next(r)
        expected = ["column_1", "column_2", "deletion_date", "modifier_indicator", "ptp_edit_rationale"]
        if header != expected:
            raise DataError(f"{PTP_SRC}: unexpected header {header}")
        seen_del: dict[str, str] = {}
        for c1, c2, deleted, mi, rationale in r:
            if deleted not in seen_del:
                seen_del[deleted] = intern(opt_date(deleted, PTP_SRC))
            if mi not in ("0", "1", "9"):
                raise DataError(f"{PTP_SRC}: modifier indicator {mi!r} for {c1}/{c2}")
            rows.append((intern(c1), intern(c2), "", seen_del[deleted], intern(mi), intern(rationale)))
    for code in {c for row in rows for c in row[:2]}:
        check_code(code, PTP_SRC)
    rows.sort(key=lambda t: (t[0], t[1], t[3], t))
    return rows


def build_mue(data: Path) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in read_rows(data / MUE_SRC):
        code = check_code(r["hcpcs_cpt_code"], MUE_SRC)
        if not r["mue_value"].isdigit() or r["mai"] not in ("1", "2", "3"):
            raise DataError(f"{MUE_SRC}: bad MUE row {r}")
        rows.append((code, r["mue_value"], r["mai"], r["mue_rationale"]))
    rows.sort()
    return rows


def build_aoc(data: Path) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Add-on codes with their edit type, and the (add-on, primary) pairs without CCCCC."""
    types: dict[str, str] = {}
    primaries = set()
    for r in read_rows(data / AOC_SRC):
        aoc, primary, edit_type = r["add_on_code"], r["primary_code"], r["aoc_edit_type"]
        check_code(aoc, AOC_SRC)
        if edit_type not in ("1", "2", "3"):
            raise DataError(f"{AOC_SRC}: edit type {edit_type!r} for {aoc}")
        if types.setdefault(aoc, edit_type) != edit_type:
            raise DataError(f"{AOC_SRC}: {aoc} has two edit types")
        if primary != AOC_PLACEHOLDER:
            primaries.add((aoc, check_code(primary, AOC_SRC), edit_type))
    return sorted(types.items()), sorted(primaries)


# --------------------------------------------------------------------------------------------
# Code lists


def build_pos(data: Path) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in read_rows(data / POS_SRC):
        if not re.match(r"^[0-9]{2}$", r["pos_code"]):
            raise DataError(f"{POS_SRC}: bad POS {r['pos_code']!r}")
        setting = POS_SETTING.get(r["pfs_facility_type"])
        if setting is None:
            raise DataError(f"{POS_SRC}: unknown facility type {r['pfs_facility_type']!r}")
        rows.append((r["pos_code"], r["pos_name"].strip(), setting, r["pos_description"].strip()))
    rows.sort()
    return rows


BETOS_SHAPE = re.compile(r"[A-Z][0-9][A-Z0-9]?")


def build_hcpcs(data: Path) -> list[tuple[str, ...]]:
    """2025 procedure codes; added/termination dates come from the 2024 file (2025 lacks them).

    The 2025 dump lost its BETOS column for about 2,500 codes (it holds "019", "013" and the
    like there, e.g. J1071 and Q5101): where the 2025 value is not a BETOS code, the July 2024
    file's BETOS is used, and "" for a code that file does not have.
    """
    dates = {}
    betos_2024 = {}
    for r in read_rows(data / HCPCS_2024_SRC):
        dates[r["hcpcs_code"]] = (
            opt_date(r["date_added"], HCPCS_2024_SRC),
            opt_date(r["date_term"], HCPCS_2024_SRC),
        )
        betos_2024[r["hcpcs_code"]] = r["betos"] if BETOS_SHAPE.fullmatch(r["betos"]) else ""
    rows: list[tuple[str, ...]] = []
    for r in read_rows(data / HCPCS_2025_SRC):
        if r["record_type"] == "modifier":
            continue
        if r["record_type"] != "procedure":
            raise DataError(f"{HCPCS_2025_SRC}: record type {r['record_type']!r}")
        code = check_code(r["hcpcs_code"], HCPCS_2025_SRC)
        added, term = dates.get(code, ("", ""))
        betos = r["betos_code"] if BETOS_SHAPE.fullmatch(r["betos_code"]) else betos_2024.get(code, "")
        rows.append(
            (
                code,
                r["short_description"].strip(),
                r["long_description"].strip(),
                r["pricing_indicator"],
                r["coverage_code"],
                betos,
                added,
                term,
            )
        )
    rows.sort()
    return rows


def build_modifiers(data: Path) -> tuple[list[tuple[str, ...]], list[str]]:
    """One row per modifier: the 2024 CPT+HCPCS list merged with the 2025 HCPCS modifiers.

    The 2024 list repeats some modifiers (KX under two categories; P1-P6 as both CPT and
    HCPCS); they are merged so the modifier is a key: categories are joined with "; ", and a
    modifier in the 2025 CMS file counts as HCPCS and takes its 2025 short description.
    Returns the rows and the values dropped for not being two characters [0-9A-Z].
    """
    dropped: list[str] = []
    sources: dict[str, set[str]] = {}
    categories: dict[str, set[str]] = {}
    descriptions: dict[str, str] = {}
    for r in read_rows(data / MOD_2024_SRC):
        m = r["modifier"].strip()
        if not MODIFIER_RE.match(m):
            dropped.append(f"{MOD_2024_SRC}: {m!r}")
            continue
        if r["modifier_type"] not in ("CPT", "HCPCS"):
            raise DataError(f"{MOD_2024_SRC}: modifier type {r['modifier_type']!r}")
        sources.setdefault(m, set()).add(r["modifier_type"])
        categories.setdefault(m, set()).update({r["category"].strip()} - {""})
        descriptions.setdefault(m, r["description"].strip())
    for r in read_rows(data / MOD_2025_SRC):
        m = r["modifier"].strip()
        if not MODIFIER_RE.match(m):
            dropped.append(f"{MOD_2025_SRC}: {m!r}")
            continue
        sources[m] = {"HCPCS"}
        categories.setdefault(m, set())
        descriptions[m] = r["short_description"].strip()
    rows: list[tuple[str, ...]] = [
        (m, "HCPCS" if "HCPCS" in sources[m] else "CPT", "; ".join(sorted(categories[m])), descriptions[m])
        for m in sources
    ]
    rows.sort()
    return rows, dropped


def build_pfs(data: Path) -> list[tuple[str, ...]]:
    """Payment indicators only; the description column is left out (CPT text is AMA's)."""
    rows: list[tuple[str, ...]] = []
    for r in read_rows(data / PFS_SRC):
        code = check_code(r["hcpcs"], PFS_SRC)
        modifier = r["modifier"].strip()
        if modifier and not MODIFIER_RE.match(modifier):
            raise DataError(f"{PFS_SRC}: modifier {modifier!r} on {code}")
        pctc = r["pctc_indicator"].strip()
        if not pctc.isdigit():
            raise DataError(f"{PFS_SRC}: PC/TC indicator {pctc!r} on {code}")
        rows.append(
            (
                code,
                modifier,
                r["status_code"].strip(),
                r["facility_na_indicator"].strip(),
                r["non_facility_na_indicator"].strip(),
                pctc,
                r["global_days"].strip(),
            )
        )
    rows.sort()
    if len({(c, m) for c, m, *_ in rows}) != len(rows):
        raise DataError(f"{PFS_SRC}: repeated (code, modifier)")
    return rows


def build_adjustment_codes(data: Path, src: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in read_rows(data / src):
        rows.append(
            (r["code"].strip(), r["description"].strip(), opt_date(r["start_date"], src), opt_date(r["stop_date"], src))
        )
    rows.sort()
    return rows


def build_group_codes(data: Path) -> list[tuple[str, ...]]:
    return sorted((r["group_code"].strip(), r["description"].strip()) for r in read_rows(data / GROUP_SRC))


# --------------------------------------------------------------------------------------------
# CPT codes used by the policy rules, with descriptions written for this project.
#
# These are deliberately short and generic, in our own words; they are NOT the AMA descriptors.
# "level n of m" names the code's place in a leveled family without restating CPT's criteria.


def _levels(first: int, text: str, count: int) -> dict[str, str]:
    return {str(first + i): f"{text}, level {i + 1} of {count}" for i in range(count)}


def _each(codes: Iterable[int], texts: Iterable[str], prefix: str) -> dict[str, str]:
    return {str(c): f"{prefix}, {t}" for c, t in zip(codes, texts, strict=True)}


MDM = ["straightforward", "low complexity", "moderate complexity", "high complexity"]
AGES = ["under 1 year", "age 1 to 4", "age 5 to 11", "age 12 to 17", "age 18 to 39", "age 40 to 64", "age 65 and over"]

EM_DESCRIPTIONS: dict[str, str] = {
    "99201": "Office or outpatient visit, new patient, lowest level",
    **_each(range(99202, 99206), MDM, "Office or outpatient visit, new patient"),
    "99211": "Office or outpatient visit, established patient, minimal (often clinical staff only)",
    **_each(range(99212, 99216), MDM, "Office or outpatient visit, established patient"),
    "99217": "Observation care, discharge day",
    **_levels(99218, "Observation care, first day", 3),
    **_levels(99221, "Hospital inpatient or observation care, first day", 3),
    **_levels(99224, "Observation care, later day", 3),
    **_levels(99231, "Hospital inpatient or observation care, later day", 3),
    **_levels(99234, "Hospital inpatient or observation care, admitted and discharged the same day", 3),
    "99238": "Hospital discharge day management, 30 minutes or less",
    "99239": "Hospital discharge day management, over 30 minutes",
    **_levels(99241, "Office or outpatient consultation", 5),
    **_levels(99251, "Inpatient or observation consultation", 5),
    **_levels(99261, "Follow-up inpatient consultation", 3),
    **_levels(99271, "Confirmatory consultation", 5),
    **_levels(99281, "Emergency department visit", 5),
    "99288": "Physician directing ambulance crew's advanced life support by radio or phone",
    "99289": "Critical care of a child during transport between facilities, first period",
    "99290": "Critical care of a child during transport between facilities, added time",
    "99291": "Critical care, first 30 to 74 minutes",
    "99292": "Critical care, each added 30 minutes",
    **{str(c): "Neonatal or pediatric critical or intensive care, per day" for c in range(99293, 99301)},
    **{str(c): "Nursing facility assessment or visit" for c in range(99301, 99304)},
    **_levels(99304, "Nursing facility care, first visit", 3),
    **_levels(99307, "Nursing facility care, later visit", 4),
    **{str(c): "Nursing facility care, later visit" for c in range(99311, 99314)},
    "99315": "Nursing facility discharge management, 30 minutes or less",
    "99316": "Nursing facility discharge management, over 30 minutes",
    "99318": "Nursing facility yearly assessment",
    **{str(c): "Rest home or custodial care visit, new patient" for c in range(99321, 99324)},
    **_levels(99324, "Rest home or assisted living visit, new patient", 5),
    **{str(c): "Rest home or custodial care visit, established patient" for c in range(99331, 99334)},
    **_levels(99334, "Rest home or assisted living visit, established patient", 4),
    "99339": "Care plan oversight for a patient at home or in a rest home, 15 to 29 minutes a month",
    "99340": "Care plan oversight for a patient at home or in a rest home, 30 minutes or more a month",
    "99341": "Home or residence visit, new patient, straightforward",
    "99342": "Home or residence visit, new patient, low complexity",
    "99343": "Home visit, new patient, moderate complexity",
    "99344": "Home or residence visit, new patient, moderate complexity",
    "99345": "Home or residence visit, new patient, high complexity",
    **_each(range(99347, 99351), MDM, "Home or residence visit, established patient"),
    "99354": "Prolonged outpatient service with the patient present, first hour",
    "99355": "Prolonged outpatient service with the patient present, each added 30 minutes",
    "99356": "Prolonged inpatient service with the patient present, first hour",
    "99357": "Prolonged inpatient service with the patient present, each added 30 minutes",
    "99358": "Prolonged service without the patient present, first hour",
    "99359": "Prolonged service without the patient present, each added 30 minutes",
    "99360": "Physician standby, each 30 minutes",
    "99361": "Medical team conference",
    "99362": "Medical team conference",
    "99363": "Outpatient anticoagulation management, first 90 days",
    "99364": "Outpatient anticoagulation management, each later 90 days",
    "99366": "Team conference with patient or family present, non-physician professional",
    "99367": "Team conference without patient or family, physician",
    "99368": "Team conference without patient or family, non-physician professional",
    **{str(c): "Telephone call by a physician" for c in range(99371, 99374)},
    **{str(c): "Care plan oversight, per month" for c in range(99374, 99381)},
    **_each(range(99381, 99388), AGES, "Preventive medicine visit, new patient"),
    **_each(range(99391, 99398), AGES, "Preventive medicine visit, established patient"),
    **_each(
        range(99401, 99405),
        ["about 15 minutes", "about 30 minutes", "about 45 minutes", "about 60 minutes"],
        "Preventive counseling, one patient",
    ),
    "99406": "Tobacco cessation counseling, 3 to 10 minutes",
    "99407": "Tobacco cessation counseling, over 10 minutes",
    "99408": "Alcohol or drug misuse screening and brief intervention, 15 to 30 minutes",
    "99409": "Alcohol or drug misuse screening and brief intervention, over 30 minutes",
    "99411": "Preventive counseling, group, about 30 minutes",
    "99412": "Preventive counseling, group, about 60 minutes",
    "99415": "Prolonged clinical staff time in the office, first hour",
    "99416": "Prolonged clinical staff time in the office, each added 30 minutes",
    "99417": "Prolonged office or outpatient visit time, each added 15 minutes",
    "99418": "Prolonged inpatient or observation visit time, each added 15 minutes",
    "99420": "Health risk assessment questionnaire, given and scored",
    "99421": "Online patient-initiated visit over up to 7 days, 5 to 10 minutes",
    "99422": "Online patient-initiated visit over up to 7 days, 11 to 20 minutes",
    "99423": "Online patient-initiated visit over up to 7 days, 21 minutes or more",
    **{str(c): "Principal care management of one high-risk condition, per month" for c in range(99424, 99428)},
    "99429": "Preventive medicine service, not otherwise listed",
    **{str(c): "Normal newborn care" for c in range(99431, 99436)},
    "99436": "Attendance at delivery for the newborn",
    "99437": "Chronic care management by a physician, added time in the month",
    "99439": "Chronic care management by clinical staff, added time in the month",
    "99440": "Newborn resuscitation",
    "99441": "Telephone visit by a physician, 5 to 10 minutes",
    "99442": "Telephone visit by a physician, 11 to 20 minutes",
    "99443": "Telephone visit by a physician, 21 to 30 minutes",
    "99444": "Online visit by a physician",
    "99446": "Consultation between clinicians by phone or internet, 5 to 10 minutes",
    "99447": "Consultation between clinicians by phone or internet, 11 to 20 minutes",
    "99448": "Consultation between clinicians by phone or internet, 21 to 30 minutes",
    "99449": "Consultation between clinicians by phone or internet, 31 minutes or more",
    "99450": "Basic life or disability insurance examination",
    "99451": "Consultation between clinicians with a written report, 5 minutes or more",
    "99452": "Referral for a consultation between clinicians, 30 minutes",
    "99453": "Remote monitoring of body measurements, device setup and teaching",
    "99454": "Remote monitoring of body measurements, device supply, each 30 days",
    "99455": "Work-related or disability examination, by the treating physician",
    "99456": "Work-related or disability examination, by another physician",
    "99457": "Remote monitoring treatment management, first 20 minutes in the month",
    "99458": "Remote monitoring treatment management, each added 20 minutes",
    "99459": "Pelvic examination added to a visit",
    "99460": "Normal newborn care in a hospital or birthing center, first day",
    "99461": "Normal newborn care outside a hospital or birthing center, first day",
    "99462": "Normal newborn care in a hospital, later day",
    "99463": "Normal newborn care, admitted and discharged the same day",
    "99464": "Attendance at delivery and first stabilization of the newborn",
    "99465": "Resuscitation of the newborn at delivery",
    "99466": "Critical care of a child during transport between facilities, first 30 to 74 minutes",
    "99467": "Critical care of a child during transport between facilities, each added 30 minutes",
    "99468": "Neonatal critical care, first day",
    "99469": "Neonatal critical care, later day",
    "99471": "Pediatric critical care for an infant or toddler, first day",
    "99472": "Pediatric critical care for an infant or toddler, later day",
    "99473": "Home blood pressure self-monitoring, patient teaching and device calibration",
    "99474": "Home blood pressure self-monitoring, review of readings",
    "99475": "Pediatric critical care for a young child, first day",
    "99476": "Pediatric critical care for a young child, later day",
    "99477": "Intensive hospital care of a newborn, first day",
    "99478": "Intensive care of a small infant, later day, under 1500 grams",
    "99479": "Intensive care of a small infant, later day, 1500 to 2500 grams",
    "99480": "Intensive care of an infant, later day, 2501 to 5000 grams",
    "99483": "Cognitive impairment assessment and care planning",
    "99484": "Behavioral health care management, per month",
    "99485": "Remote physician supervision of a critically ill child's transport, first 30 minutes",
    "99486": "Remote physician supervision of a critically ill child's transport, each added 30 minutes",
    "99487": "Complex chronic care management, first hour in the month",
    "99488": "Complex chronic care coordination with a visit",
    "99489": "Complex chronic care management, each added 30 minutes",
    "99490": "Chronic care management by clinical staff, first 20 minutes in the month",
    "99491": "Chronic care management by a physician, first 30 minutes in the month",
    "99492": "Psychiatric collaborative care, first month",
    "99493": "Psychiatric collaborative care, later month",
    "99494": "Psychiatric collaborative care, each added 30 minutes",
    "99495": "Transitional care after discharge, moderate complexity",
    "99496": "Transitional care after discharge, high complexity",
    "99497": "Advance care planning discussion, first 30 minutes",
    "99498": "Advance care planning discussion, each added 30 minutes",
    "99499": "Evaluation and management service, not otherwise listed",
}
EM_FALLBACK = "Evaluation and management service"

CPT_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "96372": ("Drug injection under the skin or into a muscle (not a vaccine or chemotherapy)", "injection"),
    "96373": ("Drug injection into an artery", "injection"),
    "96374": ("Drug given by intravenous push, first or only drug", "injection"),
    "96375": ("Drug given by intravenous push, each added new drug", "injection"),
    "96376": ("Drug given by intravenous push, same drug repeated", "injection"),
    "96377": ("Placing an on-body injector for a timed injection under the skin", "injection"),
    "96379": ("Intravenous or intra-arterial injection or infusion, not otherwise listed", "injection"),
    "96360": ("Intravenous hydration, first hour", "hydration_infusion"),
    "96361": ("Intravenous hydration, each added hour", "hydration_infusion"),
    "96365": ("Intravenous drug infusion, first hour", "hydration_infusion"),
    "96366": ("Intravenous drug infusion, each added hour", "hydration_infusion"),
    "96367": ("Intravenous drug infusion, added new drug given in sequence", "hydration_infusion"),
    "96368": ("Intravenous drug infusion, added drug given at the same time", "hydration_infusion"),
    "96369": ("Drug infusion under the skin, first hour with pump setup", "hydration_infusion"),
    "96370": ("Drug infusion under the skin, each added hour", "hydration_infusion"),
    "96371": ("Drug infusion under the skin, added pump setup at a new site", "hydration_infusion"),
    "90460": ("Vaccine given with counseling, patient 18 or younger, first component", "vaccine_admin"),
    "90461": ("Vaccine given with counseling, patient 18 or younger, each added component", "vaccine_admin"),
    "90471": ("Vaccine given by injection, first vaccine", "vaccine_admin"),
    "90472": ("Vaccine given by injection, each added vaccine", "vaccine_admin"),
    "90473": ("Vaccine given by mouth or nose, first vaccine", "vaccine_admin"),
    "90474": ("Vaccine given by mouth or nose, each added vaccine", "vaccine_admin"),
    "90480": ("COVID-19 vaccine given by injection, any product, one dose", "vaccine_admin"),
    "96401": ("Chemotherapy given under the skin or into a muscle, non-hormonal drug", "chemo_admin"),
    "96402": ("Chemotherapy given under the skin or into a muscle, hormonal drug", "chemo_admin"),
    "20600": ("Small joint or bursa needle drainage or injection, no ultrasound", "joint_injection"),
    "20604": ("Small joint or bursa needle drainage or injection, with ultrasound", "joint_injection"),
    "20605": ("Mid-size joint or bursa needle drainage or injection, no ultrasound", "joint_injection"),
    "20606": ("Mid-size joint or bursa needle drainage or injection, with ultrasound", "joint_injection"),
    "20610": ("Large joint or bursa needle drainage or injection, no ultrasound", "joint_injection"),
    "20611": ("Large joint or bursa needle drainage or injection, with ultrasound", "joint_injection"),
    "27380": ("Repair of the tendon below the kneecap, first repair", "surgery"),
    "27540": ("Open repair of a fracture at the top of the shin bone inside the knee, with fixation", "surgery"),
}
VACCINE_PRODUCT = "Vaccine or toxoid product (the substance, billed apart from giving it)"
COVID_PRODUCT = "COVID-19 vaccine product (the substance, billed apart from giving it)"
COVID_ADMIN = ("COVID-19 vaccine given, product- and dose-specific code (used before 90480)", "vaccine_admin")
# CPT COVID-19 vaccine administration codes are NNNNA (0001A ... 0174A): every such code a CMS
# table lists is taken. Codes named in CPT_DESCRIPTIONS inside a range keep their own category
# (90480 sits inside the vaccine-product range but gives the vaccine, it is not one).

# Ranges whose codes are included when CMS lists them: (low, high, category or None for the
# fixed list above).
CPT_RANGES = [
    (99201, 99499, "em"),
    (90476, 90759, "vaccine_product"),
    (91300, 91399, "covid_product"),
    (96360, 96379, None),
    (20600, 20611, None),
]
CPT_ALWAYS = [
    "99201",
    "96372",
    "90460",
    "90461",
    "90471",
    "90472",
    "90473",
    "90474",
    "96401",
    "96402",
    "27380",
    "27540",
]

# CPT codes deleted by the AMA, with the last date they were valid (hand-curated).
CPT_DELETIONS = {
    "99201": ("2020-12-31", "CPT deleted it from 2021-01-01 (new-patient office visits start at 99202)"),
    "99444": ("2019-12-31", "CPT deleted it from 2020-01-01 (replaced by 99421-99423)"),
    **{
        c: ("2022-12-31", "CPT 2023 evaluation and management revision deleted it from 2023-01-01")
        for c in [
            "99217",
            "99218",
            "99219",
            "99220",
            "99224",
            "99225",
            "99226",
            "99241",
            "99251",
            "99318",
            "99324",
            "99325",
            "99326",
            "99327",
            "99328",
            "99334",
            "99335",
            "99336",
            "99337",
            "99339",
            "99340",
            "99343",
            "99354",
            "99355",
            "99356",
            "99357",
        ]
    },
    **{
        c: ("2024-12-31", "CPT deleted it from 2025-01-01 (telephone visits moved to 98008-98015)")
        for c in ["99441", "99442", "99443"]
    },
}


def build_cpt_codes(cms_codes: set[str]) -> tuple[list[tuple[str, ...]], list[str]]:
    """The CPT codes the rules use; codes in the ranges are taken when a CMS table lists them.

    Returns the rows and the E/M codes that only got the generic fallback description.
    """
    chosen: dict[str, str] = {}  # code -> category
    for code in cms_codes:
        if re.fullmatch(r"0[0-9]{3}A", code):
            chosen[code] = "covid_admin"
        if not code.isdigit():
            continue
        n = int(code)
        for lo, hi, category in CPT_RANGES:
            if lo <= n <= hi:
                if category is None and code not in CPT_DESCRIPTIONS:
                    raise DataError(f"CPT {code}: listed by CMS but has no description here")
                chosen[code] = CPT_DESCRIPTIONS[code][1] if code in CPT_DESCRIPTIONS else (category or "")
    for code in CPT_ALWAYS:
        chosen[code] = "em" if code.startswith("99") else CPT_DESCRIPTIONS[code][1]
    rows: list[tuple[str, ...]] = []
    fallback: list[str] = []
    for code, category in chosen.items():
        if category == "em":
            description = EM_DESCRIPTIONS.get(code)
            if description is None:
                description = EM_FALLBACK
                fallback.append(code)
        elif category == "vaccine_product":
            description = VACCINE_PRODUCT
        elif category == "covid_product":
            description, category = COVID_PRODUCT, "vaccine_product"
        elif category == "covid_admin":
            description, category = COVID_ADMIN
        else:
            description = CPT_DESCRIPTIONS[code][0]
        rows.append((code, description, category))
    rows.sort()
    return rows, sorted(fallback)


def build_code_deletions(hcpcs: list[tuple[str, ...]], pfs_codes: set[str]) -> tuple[list[tuple[str, ...]], list[str]]:
    """Curated CPT deletions plus every HCPCS code with a termination date.

    deleted_date is the last date of service on which the code was valid. Returns the rows
    and warnings (a 'deleted' CPT code that the current fee schedule still prices).
    """
    rows = {code: (code, date, note) for code, (date, note) in CPT_DELETIONS.items()}
    warnings = [
        f"CPT {c} is listed as deleted but the 2025 PFS still has it" for c in sorted(CPT_DELETIONS) if c in pfs_codes
    ]
    for code, *_rest, term in hcpcs:
        if term:
            rows[code] = (code, term, "HCPCS Level II termination date (July 2024 HCPCS file)")
    return sorted(rows.values()), warnings


# --------------------------------------------------------------------------------------------


def run(data: Path, out: Path) -> list[tuple[str, int, int]]:
    """Build every table into `out`; returns (file, rows, bytes) for the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, int, int]] = []

    def emit(name: str, header: list[str], rows: list[tuple[str, ...]]) -> None:
        summary.append((name, len(rows), write_table(out, name, header, rows)))

    ptp = build_ptp(data)
    mue = build_mue(data)
    aoc_codes, aoc_primaries = build_aoc(data)
    pfs = build_pfs(data)
    hcpcs = build_hcpcs(data)
    cms_codes = {c for row in ptp for c in row[:2]} | {r[0] for r in mue} | {r[0] for r in pfs}

    emit("ncci_ptp_practitioner.csv.gz", list(PTP_HEADER), ptp)
    del ptp
    emit("ncci_mue_practitioner.csv", list(MUE_HEADER), mue)
    emit("ncci_aoc_codes.csv", list(AOC_CODE_HEADER), aoc_codes)
    emit("ncci_aoc_primaries.csv", list(AOC_PRIMARY_HEADER), aoc_primaries)
    emit("pos.csv", ["pos", "name", "setting", "description"], build_pos(data))
    emit("hcpcs_level2.csv.gz", list(HCPCS_HEADER), hcpcs)
    modifiers, dropped = build_modifiers(data)
    emit("modifiers.csv", ["modifier", "source", "category", "description"], modifiers)
    emit(
        "pfs_indicators.csv.gz",
        ["code", "modifier", "status", "facility_na", "non_facility_na", "pctc", "global_days"],
        pfs,
    )
    emit("carc.csv", ["code", "description", "start_date", "stop_date"], build_adjustment_codes(data, CARC_SRC))
    emit("rarc.csv", ["code", "description", "start_date", "stop_date"], build_adjustment_codes(data, RARC_SRC))
    emit("group_codes.csv", ["code", "description"], build_group_codes(data))
    cpt, fallback = build_cpt_codes(cms_codes)
    emit("cpt_codes.csv", ["code", "description", "category"], cpt)
    deletions, warnings = build_code_deletions(hcpcs, {r[0] for r in pfs})
    emit("code_deletions.csv", ["code", "deleted_date", "note"], deletions)

    for d in dropped:
        print(f"dropped modifier (not two characters [0-9A-Z]): {d}")
    if fallback:
        print(f"E/M codes with only the generic description: {' '.join(fallback)}")
    for w in warnings:
        print(f"warning: {w}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build kb/tables from the raw CMS / X12 reference files.")
    p.add_argument("--data", type=Path, required=True, help="raw data directory (e.g. ../shared/data)")
    p.add_argument("--out", type=Path, required=True, help="output directory (e.g. kb/tables)")
    args = p.parse_args(argv)
    data, out = args.data.resolve(), args.out.resolve()
    if not data.is_dir():
        p.error(f"no data directory at {data}")
    try:
        summary = run(data, out)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    width = max(len(name) for name, _, _ in summary)
    print(f"{'table':<{width}}  {'rows':>10}  {'bytes':>11}")
    for name, rows, size in summary:
        print(f"{name:<{width}}  {rows:>10,}  {size:>11,}")
    print(f"{'total':<{width}}  {'':>10}  {sum(s for _, _, s in summary):>11,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
