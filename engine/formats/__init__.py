"""Claim formats: our JSON, X12 5010 837P and FHIR R4 Claim in; FHIR ClaimResponse and 835 out.

    from engine.formats import load_claims_any, read_records
    claims = load_claims_any("claims.x12")            # format detected from the content
    for record in read_records(open("batch.json", "rb"), "fhir"):
        ...                                           # a Claim or a located ClaimError each

Readers: `x12` (pyx12 validates the 837P), `fhir` (fhir.resources validates the Claim).
Writers: `out_fhir` (ClaimResponse), `out_835` (CAS/LQ per line, or a whole 835 transaction).
`convert` writes the bundled examples as 837P and FHIR.
"""

from engine.formats.reader import (
    INPUT_FORMATS,
    ClaimRecord,
    InputFormat,
    detect_format,
    load_claims_any,
    read_claims_any,
    read_records,
)

__all__ = [
    "INPUT_FORMATS",
    "ClaimRecord",
    "InputFormat",
    "detect_format",
    "load_claims_any",
    "read_claims_any",
    "read_records",
]
