"""The client-side code lookup's index: compact JSON shards, one per first character of a code.

Per code: d description (from the `@docs code_list` relations), f the short texts of its per-code
facts (one per `@docs code_fact` / `code_rows` with `short=`, "" when it has none), c pair-edit
counts [first active, deleted, second active, deleted], p1/p2 the first active partners as
"code:indicator" (p1: as the first code, p2: as the second), g 1 when the code has a page. Each
shard also holds, under "~", the labels of those rows: f [[label, text when absent], ...] and e
[edit title, first side, second side]. The page loads only the shard it needs.
"""

from __future__ import annotations

import json
from collections import defaultdict

from engine.docs.model import DocsModel, lookup_fields


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
    edit = m.role("code_edit")
    header: dict = {"f": [[r.text("label"), r.text("none")] for r in lookup_fields(m.roles)]}
    if edit is not None:
        rel = m.relations.get(edit.relation)
        title = " ".join(((rel.decl.doc.get("title") if rel else None) or edit.relation).split())
        header["e"] = [title, edit.col("first").replace("_", " "), edit.col("second").replace("_", " ")]
    for bucket in buckets.values():
        bucket["~"] = header
    return {
        f"{k}.json": json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        for k, v in sorted(buckets.items())
    }


def _shard(code: str) -> str:
    first = code[:1].upper()
    return first if first.isalnum() else "_"
