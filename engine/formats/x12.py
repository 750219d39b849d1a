"""X12 5010 837P (005010X222A1) in: validated by pyx12, mapped to the claim model.

pyx12 reads the interchange and validates every segment against its 837P map (the segment
walker, element and code checks, HL and LX numbering, SE/GE/IEA counts). Each error it reports
carries the position of the segment it found it at (pyx12 counts segments from 1 at the ISA;
we add the file line where that segment starts). An error is charged to the claims it can
affect, by where it was found:

- inside a claim's 2300 loop (CLM up to the next HL, CLM or SE): that claim only;
- in an HL loop (billing provider, subscriber, patient): the claims under that HL;
- in the transaction header or at ST/SE: every claim of that transaction set;
- at GS/GE or ISA/IEA: every claim of that group or interchange.

A claim with any error is an input error naming every problem with its segment; the other
claims of the file are adjudicated. Errors that reach no claim (a transaction set with no
claim in it, or one that is not an 837P) become an error record of their own, in file order.

Mapping (one Claim per CLM): CLM01 is the claim id; the subscriber's NM109 (2010BA) the
patient id, with the 2010CA name added for a dependent patient (2000C); DMG the birth date and
sex. Each LX (2400) is a line: SV101 the code and up to four modifiers, SV104 the units, SV105
the place of service (else CLM05-1), SV107 the diagnosis pointers into the HI codes (ICD-10
codes get their dot back: ABK:D510 is D51.0), DTP*472 the date of service (the first date of an
RD8 range), the rendering NPI from 2420A (else 2310B), the 2410 drug (LIN03 NDC in 5-4-2 form,
the 2400 NTE text as its name, CTP04 and CTP05 as its dose). An 837P carries no medical record
review and no earlier claims: those parts of the claim model stay empty.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyx12.errors
import pyx12.params
import pyx12.rawx12file
import pyx12.x12n_document

from engine.claims import Claim, Drug, Problem
from engine.formats.build import ClaimDraft, LineDraft, finish

# CTP05-1 unit of measure codes for a drug quantity (837P 2410), in words.
DRUG_UNITS = {"F2": "international units", "GR": "g", "ME": "mg", "ML": "mL", "UN": "units"}
_DIAGNOSIS_QUALIFIERS = {"ABK", "ABF", "BK", "BF"}
_ICD10 = {"ABK", "ABF"}


@dataclass(frozen=True, slots=True)
class X12Record:
    """One claim of the file, or the problems that belong to no claim; `position` orders them."""

    position: int
    claim: Claim | None
    claim_id: str | None
    problems: list[Problem]


@dataclass(slots=True)
class _Seg:
    pos: int
    seg_id: str
    seg: Any  # pyx12.segment.Segment

    def value(self, ref: str) -> str:
        v = self.seg.get_value(ref)
        return v.strip() if isinstance(v, str) else ""


@dataclass(slots=True)
class _Ctx:
    isa: int
    gs: int | None
    st: int | None
    hl: int | None
    claim: int | None


@dataclass(slots=True)
class _ClaimScope:
    draft: ClaimDraft
    st: int | None
    gs: int | None
    isa: int
    hls: set[int]
    position: int
    diagnoses: list[str] = field(default_factory=list)
    claim_pos: str | None = None
    claim_npi: str | None = None


@contextmanager
def _quiet_pyx12() -> Iterator[None]:
    """pyx12 logs every error it finds; we report them ourselves, located, so hush it."""
    logger = logging.getLogger("pyx12")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _line_starts(text: str, seg_term: str) -> list[int]:
    """The file line each segment starts on (index 0 is segment 1), counted like pyx12 splits."""
    lines: list[int] = []
    line = 1
    for chunk in text.split(seg_term):
        stripped = chunk.lstrip("\r\n")
        line += chunk.count("\n") - stripped.count("\n")
        if stripped == "":
            break
        lines.append(line)
        line += stripped.count("\n")
    return lines


class _Locator:
    def __init__(self, text: str, seg_term: str) -> None:
        self.lines = _line_starts(text, seg_term)

    def __call__(self, pos: int, seg_id: str, element: str = "") -> str:
        line = self.lines[pos - 1] if 0 < pos <= len(self.lines) else None
        where = f"segment {pos}" + (f", line {line}" if line is not None and line != pos else "")
        return f"{element or seg_id} at {where}"


def _validate(text: str) -> tuple[list[_Seg], dict[str, Any], str | None]:
    """Run pyx12's validator; the segments it walked, its error tree, and a fatal message."""
    segments: list[_Seg] = []

    def collect(seg: Any, src: Any, node: Any, valid: bool) -> None:
        segments.append(_Seg(src.get_cur_line(), seg.get_seg_id(), seg))

    out = io.StringIO()
    fatal = None
    with _quiet_pyx12():
        try:
            pyx12.x12n_document.x12n_document(
                pyx12.params.params(), io.StringIO(text), None, None, None, out, callback=collect
            )
        except (pyx12.errors.X12Error, pyx12.errors.EngineError) as e:
            at = f" after segment {segments[-1].pos}" if segments else ""
            fatal = f"the X12 validator stopped{at}: {e}"
    try:
        tree = json.loads(out.getvalue()) if out.getvalue() else {"interchanges": []}
    except json.JSONDecodeError:
        tree = {"interchanges": []}
    return segments, tree, fatal


def _errors(tree: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(position, where-ish label, message) for every error in pyx12's error tree."""
    found: list[tuple[int, str, str]] = []

    def add(node: dict[str, Any], label: str, pos: int) -> None:
        found.extend((pos, label, e["err_str"]) for e in node.get("errors", []))

    for isa in tree.get("interchanges", []):
        add(isa, "ISA/IEA", isa.get("cur_line", 0))
        for gs in isa.get("groups", []):
            add(gs, "GS/GE", gs.get("cur_line", 0))
            for st in gs.get("transactions", []):
                add(st, "ST/SE", st.get("cur_line", 0))
                for seg in st.get("segments", []):
                    pos = seg.get("cur_line", 0)
                    add(seg, seg.get("seg_id") or "segment", pos)
                    for ele in seg.get("elements", []):
                        ref = f"{seg.get('seg_id') or ''}{ele.get('ele_pos', 0):02d}"
                        if ele.get("subele_pos"):
                            ref += f"-{ele['subele_pos']:02d}"
                        found.extend((pos, ref, e["err_str"]) for e in ele.get("errors", []))
    return found


def _dx(qualifier: str, code: str) -> str:
    """HI codes are sent without the dot; put it back where ICD-10-CM and ICD-9-CM have it."""
    code = code.strip().upper()
    if "." in code or len(code) <= 3:
        return code
    cut = 4 if qualifier not in _ICD10 and code.startswith("E") else 3
    return f"{code[:cut]}.{code[cut:]}"


def _ndc(code: str) -> str:
    """LIN03 N4 is the 11-digit NDC; show it in 5-4-2 form, as the claim model keeps it."""
    digits = code.strip()
    return f"{digits[:5]}-{digits[5:9]}-{digits[9:]}" if len(digits) == 11 and digits.isdigit() else digits


def _date(value: str) -> str | None:
    """CCYYMMDD (D8) or the start of CCYYMMDD-CCYYMMDD (RD8) as YYYY-MM-DD."""
    first = value.split("-")[0].strip()
    if len(first) != 8 or not first.isdigit():
        return None
    return f"{first[:4]}-{first[4:6]}-{first[6:]}"


class _Reader:
    """Walks the validated segments once, building claim drafts and each segment's context."""

    def __init__(self, segments: list[_Seg], locate: _Locator) -> None:
        self.segments = segments
        self.at = locate
        self.claims: list[_ClaimScope] = []
        self.ctx: dict[int, _Ctx] = {}
        self.isa = 0
        self.gs: int | None = None
        self.st: int | None = None
        # HL loops are known by the position of their HL segment: a file may repeat an HL01.
        self.hl: int | None = None
        self.hl_by_id: dict[str, int] = {}
        self.hl_parent: dict[int, int] = {}
        self.members: dict[int, dict[str, str]] = {}
        self.claim: _ClaimScope | None = None
        self.line: LineDraft | None = None
        self.line_note: str | None = None
        self.drug_ndc: str | None = None
        self.drug_dose: str | None = None
        self.wrong_transaction: list[tuple[int, str]] = []

    def run(self) -> None:
        for s in self.segments:
            self.segment(s)
            claim_index = len(self.claims) - 1 if self.claim is not None else None
            self.ctx[s.pos] = _Ctx(self.isa, self.gs, self.st, self.hl, claim_index)
        self.end_claim()

    # --- structure ------------------------------------------------------------------------
    def segment(self, s: _Seg) -> None:
        sid = s.seg_id
        if sid in ("ISA", "GS", "ST", "SE", "GE", "IEA", "HL"):
            self.end_claim()
        if sid == "ISA":
            self.isa, self.gs, self.st, self.hl = s.pos, None, None, None
        elif sid == "GS":
            self.gs, self.st, self.hl = s.pos, None, None
        elif sid == "ST":
            self.st, self.hl, self.hl_by_id = s.pos, None, {}
            kind, version = s.value("ST01"), s.value("ST03")
            if kind != "837" or not version.startswith("005010X222"):
                self.wrong_transaction.append(
                    (
                        s.pos,
                        f"transaction set {kind} {version} is not an X12 5010 837P (005010X222A1) professional claim",
                    )
                )
        elif sid in ("SE", "GE", "IEA"):
            self.hl = None
        elif sid == "HL":
            self.hl = s.pos
            parent = self.hl_by_id.get(s.value("HL02"))
            if parent is not None:
                self.hl_parent[s.pos] = parent
            self.hl_by_id[s.value("HL01")] = s.pos
        elif sid == "CLM":
            self.start_claim(s)
        elif self.claim is not None:
            self.in_claim(s)
        elif sid == "NM1" and self.hl is not None:
            member = self.members.setdefault(self.hl, {})
            if s.value("NM101") == "IL":
                member["id"] = s.value("NM109")
            elif s.value("NM101") == "QC":
                member["patient"] = ",".join(filter(None, (s.value("NM103"), s.value("NM104"))))
            member["last_nm1"] = s.value("NM101")
        elif sid == "DMG" and self.hl is not None:
            member = self.members.setdefault(self.hl, {})
            member["birth"] = s.value("DMG02")
            member["sex"] = s.value("DMG03")

    def hl_chain(self) -> list[int]:
        chain: list[int] = []
        h = self.hl
        while h is not None and h not in chain:
            chain.append(h)
            h = self.hl_parent.get(h)
        return chain

    def start_claim(self, s: _Seg) -> None:
        self.end_claim()
        chain = self.hl_chain()
        member_id = patient = birth = sex = None
        for h in chain:  # nearest HL first: a 2000C patient, then the 2000B subscriber
            m = self.members.get(h, {})
            patient = patient or m.get("patient")
            birth = birth or m.get("birth")
            sex = sex or m.get("sex")
            member_id = member_id or m.get("id")
        patient_id = f"{member_id}:{patient}" if member_id and patient else member_id
        birth_iso = _date(birth) if birth else None
        draft = ClaimDraft(
            where=self.at(s.pos, "CLM"),
            claim_id=s.value("CLM01") or None,
            patient_id=patient_id,
            birth_date=birth_iso or birth or None,
            sex=sex or None,
        )
        scope = _ClaimScope(draft, self.st, self.gs, self.isa, set(chain), s.pos)
        scope.claim_pos = s.value("CLM05-1") or None
        self.claims.append(scope)
        self.claim = scope

    def end_claim(self) -> None:
        self.end_line()
        self.claim = None

    def end_line(self) -> None:
        ln = self.line
        if ln is None or self.claim is None:
            self.line = None
            return
        if self.drug_ndc is not None:
            ln.drug = Drug(ndc=self.drug_ndc, name=self.line_note or "", dose=self.drug_dose or "")
        elif self.line_note is not None:  # a drug named in the 2400 NTE, with no NDC loop
            ln.drug = Drug(ndc="", name=self.line_note, dose="")
        if ln.rendering_npi is None:
            ln.rendering_npi = self.claim.claim_npi
            ln.origin.setdefault("rendering_npi", ln.origin.get("rendering_npi_claim", ln.where))
        if ln.pos is None:
            ln.pos = self.claim.claim_pos
            ln.origin["pos"] = self.claim.draft.where
        self.claim.draft.lines.append(ln)
        self.line, self.line_note, self.drug_ndc, self.drug_dose = None, None, None, None

    # --- inside a claim -------------------------------------------------------------------
    def in_claim(self, s: _Seg) -> None:
        assert self.claim is not None
        sid, claim = s.seg_id, self.claim
        if sid == "HI":
            for i in range(1, 13):
                qualifier, code = s.value(f"HI{i:02d}-1"), s.value(f"HI{i:02d}-2")
                if qualifier in _DIAGNOSIS_QUALIFIERS and code:
                    claim.diagnoses.append(_dx(qualifier, code))
        elif sid == "LX":
            self.end_line()
            number = s.value("LX01")
            self.line = LineDraft(
                where=self.at(s.pos, "LX"),
                number=int(number) if number.isdigit() else None,
                service_date=None,
                code=None,
                modifiers=[],
                units=None,
                pos=None,
                rendering_npi=None,
            )
            self.line.origin["line"] = self.at(s.pos, "LX", "LX01")
        elif sid == "NM1" and s.value("NM101") == "82":
            npi = s.value("NM109") if s.value("NM108") == "XX" else ""
            if self.line is not None:
                self.line.rendering_npi = npi or None
                self.line.origin["rendering_npi"] = self.at(s.pos, "NM1", "NM109")
            else:
                claim.claim_npi = npi or None
        elif self.line is not None:
            self.in_line(s, self.line)

    def in_line(self, s: _Seg, ln: LineDraft) -> None:
        assert self.claim is not None
        sid = s.seg_id
        if sid == "SV1":
            ln.origin.update(
                {
                    "code": self.at(s.pos, "SV1", "SV101-02"),
                    "modifiers": self.at(s.pos, "SV1", "SV101"),
                    "units": self.at(s.pos, "SV1", "SV104"),
                    "pos": self.at(s.pos, "SV1", "SV105"),
                }
            )
            if s.value("SV101-1") not in ("HC", ""):
                self.claim.draft.problem(
                    self.at(s.pos, "SV1", "SV101-01"),
                    f"only HCPCS/CPT procedure codes (HC) are read, got {s.value('SV101-1')}",
                )
            ln.code = s.value("SV101-2") or None
            ln.modifiers = [m for m in (s.value(f"SV101-{i}") for i in range(3, 7)) if m]
            units = s.value("SV104")
            try:
                ln.units = float(units) if units else None
            except ValueError:
                self.claim.draft.problem(ln.origin["units"], f"units are not a number: {units!r}")
            ln.pos = s.value("SV105") or None
            for i in range(1, 5):
                pointer = s.value(f"SV107-{i}")
                if not pointer:
                    continue
                n = int(pointer) if pointer.isdigit() else 0
                if 1 <= n <= len(self.claim.diagnoses):
                    ln.diagnoses.append(self.claim.diagnoses[n - 1])
                else:
                    self.claim.draft.problem(
                        self.at(s.pos, "SV1", f"SV107-{i:02d}"),
                        f"diagnosis pointer {pointer} points at no HI code (the claim has {len(self.claim.diagnoses)})",
                    )
        elif sid == "DTP" and s.value("DTP01") == "472":
            ln.origin["service_date"] = self.at(s.pos, "DTP", "DTP03")
            ln.service_date = _date(s.value("DTP03")) or s.value("DTP03") or None
        elif sid == "NTE":
            self.line_note = s.value("NTE02") or None
        elif sid == "LIN":
            if s.value("LIN02") == "N4":
                self.drug_ndc = _ndc(s.value("LIN03"))
        elif sid == "CTP" and self.drug_ndc is not None:
            quantity, unit = s.value("CTP04"), s.value("CTP05-1")
            if quantity:
                self.drug_dose = f"{quantity} {DRUG_UNITS.get(unit, unit)}".strip()


def read_x12(text: str) -> list[X12Record]:
    """Every claim of an 837P file, and the located errors that belong to no claim, in order."""
    text = text.lstrip("\ufeff \t\r\n")
    try:
        raw = pyx12.rawx12file.RawX12File(io.StringIO(text))
    except pyx12.errors.X12Error as e:
        return [X12Record(1, None, None, [Problem("segment 1", f"not a readable X12 interchange: {e}")])]
    locate = _Locator(text, raw.seg_term)
    segments, tree, fatal = _validate(text)
    reader = _Reader(segments, locate)
    reader.run()
    per_claim: list[list[Problem]] = [[] for _ in reader.claims]
    orphans: dict[int, list[Problem]] = {}
    errors = [(pos, locate(pos, label) if label[:1].isalpha() else label, msg) for pos, label, msg in _errors(tree)]
    errors += [(pos, locate(pos, "ST"), msg) for pos, msg in reader.wrong_transaction]
    for pos, where, message in sorted(errors, key=lambda e: e[0]):
        targets, anchor = _targets(reader, pos)
        problem = Problem(where, message)
        if targets:
            for i in targets:
                per_claim[i].append(problem)
        else:
            orphans.setdefault(anchor, []).append(problem)
    if fatal:
        last = segments[-1].pos if segments else 1
        orphans.setdefault(last, []).append(Problem(locate(last, "X12"), fatal))
    records: list[X12Record] = []
    for scope, problems in zip(reader.claims, per_claim, strict=True):
        built = finish(scope.draft)
        if isinstance(built, Claim) and not problems:
            records.append(X12Record(scope.position, built, built.id, []))
        else:
            found = problems + (built if isinstance(built, list) else [])
            records.append(X12Record(scope.position, None, scope.draft.claim_id, found))
    records += [X12Record(pos, None, None, problems) for pos, problems in orphans.items()]
    if not records:
        records.append(X12Record(1, None, None, [Problem(locate(1, "ISA"), "the file holds no 837P claim (CLM)")]))
    return sorted(records, key=lambda r: r.position)


def _targets(reader: _Reader, pos: int) -> tuple[list[int], int]:
    """The claims an error at `pos` concerns, and where to file it when it concerns none."""
    ctx = reader.ctx.get(pos)
    if ctx is None:  # past the last segment pyx12 walked: the end of the file
        last = max(reader.ctx) if reader.ctx else 1
        ctx = reader.ctx.get(last, _Ctx(1, None, None, None, None))
        ctx = _Ctx(ctx.isa, ctx.gs, ctx.st, None, None)
    claims = reader.claims
    if ctx.claim is not None:
        return [ctx.claim], pos
    if ctx.hl is not None:
        return [i for i, c in enumerate(claims) if ctx.hl in c.hls], ctx.st or pos
    if ctx.st is not None:
        return [i for i, c in enumerate(claims) if c.st == ctx.st], ctx.st
    if ctx.gs is not None:
        return [i for i, c in enumerate(claims) if c.gs == ctx.gs], ctx.gs
    return [i for i, c in enumerate(claims) if c.isa == ctx.isa], ctx.isa


def validation_errors(text: str) -> list[tuple[int, str, str]]:
    """Every error pyx12 finds in an X12 file (any transaction set it has a map for, 835s
    included): (segment position, where, message), in file order. A fatal stop is one of them."""
    segments, tree, fatal = _validate(text.lstrip("\ufeff \t\r\n"))
    found = sorted(_errors(tree), key=lambda e: e[0])
    if fatal:
        found.append((segments[-1].pos if segments else 1, "X12", fatal))
    return found
