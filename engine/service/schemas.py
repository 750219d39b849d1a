"""JSON Schemas for the OpenAPI document: the claim we read and the answers we write.

The claim is validated by engine/claims.py, not here (its problems name the exact field paths
the CLI prints); this schema documents the shape and lets Schemathesis generate claims.
Answers allow extra members, so fields the result gains stay valid.
"""

from __future__ import annotations

from typing import Any

from engine.claim_schema import claim_schema


def _claim_schema() -> dict[str, Any]:
    """The claim's JSON Schema, generated from the claim model (engine/claim_schema.py): the one
    description the reader, the site and this API share. `$schema` is dropped for embedding."""
    schema = claim_schema()
    schema.pop("$schema", None)
    return schema


CLAIM: dict[str, Any] = _claim_schema()

_REASON = {
    "type": "object",
    "required": ["rule", "title", "kind", "severity", "group", "carc", "rarc", "message", "sources"],
    "properties": {
        "rule": {"type": "string"},
        "title": {"type": "string"},
        "kind": {"type": "string"},
        "severity": {"type": "string"},
        "group": {"type": "string"},
        "carc": {"type": "string"},
        "rarc": {"type": "array", "items": {"type": "string"}},
        "message": {"type": "string"},
        "sources": {"type": "array", "items": {"type": "string"}},
        "proof": {"type": "object"},
        "role": {"type": "string", "enum": ["primary", "supporting", "warning", "overridden"]},
        "because": {"type": ["array", "null"], "items": {"type": "string"}},
        "citations": {"type": "array", "items": {"type": "object"}},
        "guidance": {"type": "array", "items": {"type": "string"}},
        "remedies": {
            "type": ["array", "null"],
            "items": {"type": "object"},
            "description": "null when remedies were not searched (?remedies=false)",
        },
        "blocked_options": {"type": "array", "items": {"type": "object"}},
        "overridden_by": {"type": "string"},
    },
}

RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["claim", "kb", "lines"],
    "properties": {
        "claim": {"type": "string"},
        "kb": {"type": "string"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["line", "code", "decision", "reasons"],
                "properties": {
                    "line": {"type": "integer"},
                    "code": {"type": "string"},
                    "decision": {"type": "string", "enum": ["pay", "deny"]},
                    "primary": {"type": ["string", "null"], "description": "the primary reason's rule id"},
                    "reasons": {"type": "array", "items": _REASON},
                },
            },
        },
    },
}

WHY_NOT: dict[str, Any] = {
    "type": "object",
    "required": ["claim", "line", "rule", "fired", "explanation"],
    "properties": {
        "claim": {"type": "string"},
        "line": {"type": "integer"},
        "rule": {"type": "string"},
        "fired": {"type": "boolean"},
        "failed_condition": {"type": ["string", "null"]},
        "condition_index": {"type": ["integer", "null"]},
        "explanation": {"type": "string"},
        "bindings": {"type": "object"},
    },
}

RULE: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "title",
        "kind",
        "outcome",
        "severity",
        "group",
        "carc",
        "rarc",
        "message",
        "sources",
        "location",
    ],
    "properties": {
        "id": {"type": "string"},
        "title": {"type": "string"},
        "kind": {"type": "string"},
        "outcome": {"type": "string"},
        "severity": {"type": "string"},
        "group": {"type": "string"},
        "carc": {"type": "string"},
        "rarc": {"type": "array", "items": {"type": "string"}},
        "message": {"type": "string"},
        "sources": {"type": "array", "items": {"type": "string"}},
        "location": {"type": "string"},
        "annotations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "value"],
                "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
            },
        },
        "clauses": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["text", "location"],
                "properties": {"text": {"type": "string"}, "location": {"type": "string"}},
            },
        },
        "remedies": {"type": "array", "items": {"type": "string"}},
    },
}

RULES: dict[str, Any] = {
    "type": "object",
    "required": ["kb", "rules"],
    "properties": {"kb": {"type": "string"}, "rules": {"type": "array", "items": RULE}},
}

_PARTNERS = {
    "type": "object",
    "required": ["total", "active", "items", "next_offset"],
    "properties": {
        "total": {"type": "integer"},
        "active": {"type": "integer"},
        "next_offset": {"type": ["integer", "null"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["partner", "column_1", "column_2", "modifier_indicator", "deletion_date", "active"],
                "properties": {
                    "partner": {"type": "string"},
                    "column_1": {"type": "string"},
                    "column_2": {"type": "string"},
                    "modifier_indicator": {"type": ["integer", "null"]},
                    "deletion_date": {"type": ["string", "null"]},
                    "active": {"type": "boolean"},
                    "rationale": {"type": "string"},
                },
            },
        },
    },
}

CODE: dict[str, Any] = {
    "type": "object",
    "required": ["code", "known", "description", "category", "ranges", "facts", "links", "edits", "tables"],
    "properties": {
        "code": {"type": "string"},
        "known": {"type": "boolean"},
        "description": {"type": "string"},
        "category": {"type": ["string", "null"]},
        "ranges": {"type": "array", "items": {"type": "string"}},
        "facts": {
            "description": "the code's rows in relations the KB documents as per-code facts (e.g. its MUE)",
            "type": "array",
            "items": {
                "type": "object",
                "required": ["relation", "label", "text", "row"],
                "properties": {
                    "relation": {"type": "string"},
                    "label": {"type": "string"},
                    "text": {"type": "string"},
                    "row": {"type": "object"},
                },
            },
        },
        "links": {
            "description": "codes linked to this one (e.g. an add-on code's primaries, and the reverse)",
            "type": "array",
            "items": {
                "type": "object",
                "required": ["relation", "label", "codes"],
                "properties": {
                    "relation": {"type": "string"},
                    "label": {"type": "string"},
                    "codes": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "edits": {
            "description": "pair edits (e.g. NCCI PTP): partners with the code on each side, a page at a time",
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "relation",
                    "title",
                    "first_label",
                    "second_label",
                    "offset",
                    "limit",
                    "status",
                    "column_1",
                    "column_2",
                ],
                "properties": {
                    "relation": {"type": "string"},
                    "title": {"type": "string"},
                    "first_label": {"type": "string"},
                    "second_label": {"type": "string"},
                    "offset": {"type": "integer"},
                    "limit": {"type": "integer"},
                    "status": {"type": "string"},
                    "column_1": _PARTNERS,
                    "column_2": _PARTNERS,
                },
            },
        },
        "tables": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object"}}},
    },
}

HEALTH: dict[str, Any] = {
    "type": "object",
    "required": ["status", "uptime_seconds", "workers"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "starting", "failed"]},
        "uptime_seconds": {"type": "number"},
        "started_at": {"type": "string"},
        "kb": {
            "type": "object",
            "required": ["version", "rules", "tables"],
            "properties": {
                "version": {"type": "string"},
                "root": {"type": "string"},
                "rules": {"type": "integer"},
                "load_seconds": {"type": ["number", "null"]},
                "tables": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["relation", "file", "rows", "sha256", "vintage"],
                        "properties": {
                            "relation": {"type": "string"},
                            "file": {"type": "string"},
                            "rows": {"type": "integer"},
                            "sha256": {"type": "string"},
                            "vintage": {"type": "string"},
                        },
                    },
                },
            },
        },
        "workers": {
            "type": "object",
            "required": ["configured", "ready"],
            "properties": {
                "configured": {"type": "integer"},
                "ready": {"type": "integer"},
                "restarts": {"type": "integer"},
            },
        },
        "limits": {"type": "object"},
        "detail": {"type": "string"},
    },
}

COMPONENTS = {
    "Claim": CLAIM,
    "ClaimResult": RESULT,
    "WhyNot": WHY_NOT,
    "Rule": RULE,
    "Rules": RULES,
    "Code": CODE,
    "Health": HEALTH,
}
