"""A reproducible claim corpus drawn from the real tables.

Each claim is built around one scenario (a PTP pair with indicator 0/1/9 or a deleted row, an
MUE code near or over its limit, an add-on code with or without a primary, the injection
policy's 96372 + E/M + drug claims, vaccines, 20610 with 96372, or a clean claim), then padded
to its line count (1-12) with other services, some for another provider or date so that the
"same encounter" test matters. Some claims carry history lines that are partners or add units.
Everything comes from one `random.Random(seed)`, and the tables are read in file order, so the
same seed gives the same claims.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

from benchmarks.tables import TABLES, NcciTables

NPIS = ["1234567893", "1098765432", "1467585592", "1811122233", "1992753880", "1245319599"]
POS_WEIGHTS = [
    ("11", 60),
    ("22", 10),
    ("19", 6),
    ("21", 6),
    ("12", 4),
    ("23", 3),
    ("24", 3),
    ("49", 3),
    ("02", 2),
    ("81", 3),
]
EM_ESTABLISHED = ["99211", "99212", "99213", "99214", "99215"]
INJECTION_DRUGS = ["J3420", "J1030", "J1040", "J1071", "J0696", "J2315"]
DRUG_NAMES = {
    "J3420": ("cyanocobalamin", "1000 mcg"),
    "J1030": ("methylprednisolone", "40 mg"),
    "J1040": ("methylprednisolone", "80 mg"),
    "J1071": ("testosterone cypionate", "100 mg"),
    "J0696": ("ceftriaxone", "250 mg"),
    "J2315": ("naltrexone", "380 mg"),
}
DX = ["E53.8", "D51.0", "M75.51", "J06.9", "E29.1", "Z23", "M17.11", "I10", "E11.9", "R51.9"]
CREDENTIALS = ["MD", "DO", "NP", "PA", "RN", "MA"]
COMMON = [
    "99213",
    "99214",
    "36415",
    "85025",
    "80053",
    "81002",
    "71046",
    "93000",
    "97110",
    "97140",
    "G0008",
    "90686",
    "J3420",
    "96372",
    "20610",
    "11721",
    "17110",
    "29125",
]
BYPASS_MODS = ["25", "59", "XS", "XU", "XE", "XP", "57", "91"]
ANATOMIC_PAIRS = [("LT", "RT"), ("RT", "LT"), ("LT", "LT"), ("F1", "F2"), ("TA", "T1"), ("E1", "E1")]

SCENARIOS = [  # (name, weight)
    ("ptp_mi1", 16),
    ("ptp_mi0", 10),
    ("ptp_mi9", 4),
    ("ptp_deleted", 6),
    ("mue", 14),
    ("aoc", 10),
    ("injection", 16),
    ("vaccine", 8),
    ("joint_injection", 5),
    ("clean", 25),
]

START = dt.date(2024, 1, 1)
DAYS = 366


def _read_cpt_categories(path: Path = TABLES / "cpt_codes.csv") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["category"], []).append(row["code"])
    return out


class CorpusGenerator:
    def __init__(self, tables: NcciTables, seed: int) -> None:
        self.t = tables
        self.rng = random.Random(seed)
        self.seed = seed
        cats = _read_cpt_categories()
        self.vaccine_products = cats.get("vaccine_product", ["90686"])
        self.em_codes = cats.get("em", EM_ESTABLISHED)
        self.mue_by_mai: dict[int, list[str]] = {1: [], 2: [], 3: []}
        for code, (value, mai) in tables.mue.items():  # file order
            if value < 9000:
                self.mue_by_mai.setdefault(mai, []).append(code)
        self.aoc_by_type: dict[int, list[str]] = {1: [], 2: [], 3: []}
        for code, et in tables.aoc_code.items():
            self.aoc_by_type.setdefault(et, []).append(code)
        # Filler services: everyday codes plus a spread of table codes that allow 3+ units and
        # are not add-ons, so padding alone rarely denies.
        spread = [
            c for c in self.mue_by_mai[3] + self.mue_by_mai[1] if tables.mue[c][0] >= 3 and c not in tables.aoc_code
        ]
        self.filler = COMMON * 8 + spread[::50]
        self.pos_values = [p for p, _ in POS_WEIGHTS]
        self.pos_weights = [w for _, w in POS_WEIGHTS]

    # -- small draws ----------------------------------------------------------------------

    def _date(self) -> str:
        return (START + dt.timedelta(days=self.rng.randrange(DAYS))).isoformat()

    def _pos(self) -> str:
        return self.rng.choices(self.pos_values, self.pos_weights)[0]

    def _units_near(self, code: str) -> int:
        value = self.t.mue[code][0] if code in self.t.mue else 1
        return max(1, min(9999, value + self.rng.choice([-1, 0, 0, 1, 1, 2])))

    # -- scenario service lists: dicts with code, modifiers, units (+ optional npi/date/history)

    def _ptp_pair(self, cat: str) -> list[dict[str, Any]]:
        c1, c2, _row = self.rng.choice(self.t.samples[cat])
        r = self.rng.random()
        mods_b: list[str] = []
        mods_a: list[str] = []
        if r < 0.35:
            pass
        elif r < 0.65:
            mods_b = [self.rng.choice(BYPASS_MODS)]
        elif r < 0.75:
            mods_a = [self.rng.choice(["59", "XS", "XU"])]
        elif r < 0.9:
            ma, mb = self.rng.choice(ANATOMIC_PAIRS)
            mods_a, mods_b = [ma], [mb]
        else:
            mods_b = [self.rng.choice(["LT", "RT", "22", "26", "TC", "76"])]
        a = {"code": c1, "modifiers": mods_a}
        b = {"code": c2, "modifiers": mods_b}
        return [a, b] if self.rng.random() < 0.7 else [b, a]

    def _scenario(self, name: str, dos: str) -> tuple[list[dict[str, Any]], str | None]:
        """Services and, for scenarios that need one, a forced date of service."""
        rng = self.rng
        if name in ("ptp_mi1", "ptp_mi0", "ptp_mi9"):
            svcs = self._ptp_pair(name[4:])
            if rng.random() < 0.15:  # the partner is already adjudicated
                svcs[0]["history"] = True
            return svcs, None
        if name == "ptp_deleted":
            c1, c2, row = rng.choice(self.t.samples["deleted"])
            deleted = dt.date.fromisoformat(row[1])
            forced = (deleted + dt.timedelta(days=rng.choice([-20, -1, 0, 1, 15]))).isoformat()
            return [
                {"code": c1, "modifiers": []},
                {"code": c2, "modifiers": rng.choice([[], [], ["59"], ["25"]])},
            ], forced
        if name == "mue":
            mai = rng.choice([1, 2, 3, 3])
            code = rng.choice(self.mue_by_mai[mai])
            units = self._units_near(code)
            if mai != 1 and units > 1 and rng.random() < 0.6:  # split across lines / history
                first = rng.randint(1, units - 1)
                second = {"code": code, "modifiers": [], "units": units - first}
                if rng.random() < 0.3:
                    second["history"] = True
                return [{"code": code, "modifiers": [], "units": first}, second], None
            return [{"code": code, "modifiers": [], "units": units}], None
        if name == "aoc":
            et = rng.choice([1, 1, 1, 2, 3])
            code = rng.choice(self.aoc_by_type[et])
            svcs = [{"code": code, "modifiers": []}]
            prims = sorted(self.t.aoc_primary.get(code, ()))
            if prims and rng.random() < 0.5:
                svcs.insert(0, {"code": rng.choice(prims), "modifiers": []})
                if rng.random() < 0.2:
                    svcs[0]["history"] = True
            return svcs, None
        if name == "injection":
            drug = rng.choice(INJECTION_DRUGS)
            svcs = [
                {
                    "code": "96372",
                    "modifiers": rng.choice([[], [], ["59"], ["RT"]]),
                    "units": rng.choice([1, 1, 1, 2, 5]),
                },
                {"code": drug, "modifiers": [], "units": self._units_near(drug)},
            ]
            if rng.random() < 0.8:
                em = rng.choice(EM_ESTABLISHED)
                svcs.insert(0, {"code": em, "modifiers": rng.choice([[], ["25"], ["25"], ["59"]])})
            return svcs, None
        if name == "vaccine":
            svcs = []
            products = rng.sample(self.vaccine_products, 2)
            if rng.random() < 0.75:
                svcs.append({"code": rng.choice(["90471", "90471", "G0008", "90460"]), "modifiers": [], "units": 1})
            svcs.append({"code": products[0], "modifiers": []})
            if rng.random() < 0.6:
                svcs.append({"code": "90472", "modifiers": [], "units": rng.choice([1, 1, 2, 9])})
                svcs.append({"code": products[1], "modifiers": []})
            if rng.random() < 0.15:  # a second 90471 (MAI 2: summed, both deny)
                svcs.append({"code": "90471", "modifiers": [], "units": 1, "history": rng.random() < 0.5})
            return svcs, None
        if name == "joint_injection":
            return [
                {"code": "20610", "modifiers": rng.choice([[], ["LT"], ["RT"]])},
                {"code": "96372", "modifiers": rng.choice([[], [], ["59"], ["XS"], ["25"]])},
                {"code": rng.choice(INJECTION_DRUGS[:3]), "modifiers": []},
            ], None
        # clean: distinct everyday services, one unit each
        codes = rng.sample(["99213", "36415", "85025", "80053", "81002", "71046", "97110"], rng.randint(1, 3))
        return [{"code": c, "modifiers": ["25"] if c == "99213" and rng.random() < 0.75 else []} for c in codes], None

    # -- claims ---------------------------------------------------------------------------

    def _line(self, number: int, svc: dict[str, Any], npi: str, dos: str, pos: str, cred: str) -> dict[str, Any]:
        rng = self.rng
        code = svc["code"]
        line: dict[str, Any] = {
            "line": number,
            "service_date": dos,
            "code": code,
            "modifiers": svc.get("modifiers", [])[:4],
            "units": svc.get("units", 1),
            "pos": pos,
            "rendering_npi": npi,
            "rendering_credential": cred,
            "diagnoses": rng.sample(DX, rng.randint(1, 2)),
        }
        if not line["modifiers"]:
            del line["modifiers"]
        if code in DRUG_NAMES:
            name, dose = DRUG_NAMES[code]
            line["drug"] = {"ndc": f"{rng.randrange(10**10, 10**11)}", "name": name, "dose": dose}
        if code == "96372" and rng.random() < 0.7:
            doc: dict[str, Any] = {
                "drug_name": "cyanocobalamin",
                "dose": "1000 mcg",
                "route": "IM",
                "site": rng.choice(["left deltoid", "right gluteus"]),
                "time": "10:15",
                "diagnosis_linked": rng.random() < 0.9,
                "consent": rng.random() < 0.9,
                "administered_by": {"name": "A. Nurse", "credential": rng.choice(["RN", "LPN", "MA"])},
            }
            if rng.random() < 0.2:
                doc.pop(rng.choice(["dose", "site", "route", "time"]))
            line["documentation"] = doc
        return line

    def claim(self, index: int) -> dict[str, Any]:
        rng = self.rng
        names = [n for n, _ in SCENARIOS]
        weights = [w for _, w in SCENARIOS]
        scenario = rng.choices(names, weights)[0]
        n_lines = rng.randint(1, 12)
        dos = self._date()
        svcs, forced = self._scenario(scenario, dos)
        if forced is not None and forced >= self.t.min_dos:
            dos = forced
        npi = rng.choice(NPIS)
        pos = self._pos()
        cred = rng.choice(CREDENTIALS[:4])
        current = [s for s in svcs if not s.get("history")]
        hist = [s for s in svcs if s.get("history")]
        present = {s["code"] for s in svcs}
        while len(current) < n_lines:
            code = rng.choice(self.filler)
            if code in present and rng.random() < 0.95:  # repeats are rare on real claims
                continue
            present.add(code)
            if code.startswith("992"):  # coders mostly append 25 to an E/M billed with more
                mods = ["25"] if rng.random() < 0.75 else []
            else:
                mods = rng.choice([[]] * 6 + [["59"], ["LT"], ["RT"], ["XU"]])
            limit = self.t.mue.get(code, (9999, 1))[0]
            units = 2 if limit >= 2 and rng.random() < 0.15 else 1
            svc = {"code": code, "modifiers": mods, "units": units}
            other = rng.random()
            if other < 0.12:
                svc["npi"] = rng.choice([n for n in NPIS if n != npi])
            elif other < 0.2:
                svc["date"] = self._date()
            current.append(svc)
        current = current[:12]
        rng.shuffle(current)
        lines = []
        for i, svc in enumerate(current, start=1):
            lines.append(self._line(i, svc, str(svc.get("npi", npi)), str(svc.get("date", dos)), pos, cred))
        claim: dict[str, Any] = {
            "id": f"BENCH-{self.seed}-{index:06d}",
            "patient": {
                "id": f"PAT-{rng.randrange(100000):05d}",
                "birth_date": f"{rng.randint(1935, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "sex": rng.choice(["F", "M"]),
            },
            "lines": lines,
        }
        if hist or rng.random() < 0.1:
            history = []
            prior = f"PRIOR-{rng.randrange(10**6):06d}"
            for j, svc in enumerate(hist, start=1):
                history.append(
                    {
                        "claim_id": prior,
                        "line": j,
                        "service_date": dos,
                        "code": svc["code"],
                        "modifiers": svc.get("modifiers", []),
                        "units": svc.get("units", 1),
                        "pos": pos,
                        "rendering_npi": npi,
                    }
                )
            if rng.random() < 0.5:  # unrelated history: another date
                history.append(
                    {
                        "claim_id": prior,
                        "line": len(history) + 1,
                        "service_date": self._date(),
                        "code": rng.choice(COMMON),
                        "units": 1,
                        "pos": pos,
                        "rendering_npi": npi,
                    }
                )
            if history:
                claim["history"] = history
        claim["_scenario"] = scenario
        return claim


def generate(tables: NcciTables, n: int, seed: int) -> list[dict[str, Any]]:
    """n claim objects (JSON-ready). `_scenario` is a benchmark-only key; strip it with
    `strip_meta` before handing a claim to anything but parse_claim (which ignores it)."""
    gen = CorpusGenerator(tables, seed)
    return [gen.claim(i) for i in range(n)]


def strip_meta(claim: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in claim.items() if not k.startswith("_")}


def write_jsonl(claims: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for c in claims:
            f.write(json.dumps(strip_meta(c), separators=(",", ":")) + "\n")
