"""The client-side code lookup's index: compact JSON shards, one per first character of a code.

Per code: d description (HCPCS short text or our CPT text), m/i MUE value and MAI, a add-on edit
type, s fee-schedule status, na "F"/"N" when the fee schedule has no facility / non-facility
payment, c PTP counts [column 1 active, deleted, column 2 active, deleted], p1/p2 the first active
partners as "code:modifier indicator" (p1: partners this code bundles, p2: codes that bundle
it), g 1 when the code has a page. The page loads only the shard it needs.
"""

from __future__ import annotations

import json
from collections import defaultdict

from engine.docs.model import DocsModel


def shards(m: DocsModel) -> dict[str, str]:
    """{shard file name: JSON text}."""
    buckets: dict[str, dict[str, dict]] = defaultdict(dict)
    for code in sorted(m.lookup_extra):
        e = dict(m.lookup_extra[code])
        if code in m.lookup_descriptions:
            e["d"] = m.lookup_descriptions[code]
        st = m.stats.get(code)
        if st is not None and st.total:
            e["c"] = [st.col1_active, st.col1_deleted, st.col2_active, st.col2_deleted]
            if st.partners1:
                e["p1"] = st.partners1
            if st.partners2:
                e["p2"] = st.partners2
        if code in m.codes:
            e["g"] = 1
        buckets[_shard(code)][code] = e
    return {
        f"{k}.json": json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        for k, v in sorted(buckets.items())
    }


def _shard(code: str) -> str:
    first = code[:1].upper()
    return first if first.isalnum() else "_"
