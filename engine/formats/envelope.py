"""The X12 envelope (ISA/GS around one ST/SE transaction set), shared by the 837P and 835 writers."""

from __future__ import annotations

SENDER = "POLICYKB"


def interchange(
    *, transaction: str, version: str, functional_id: str, receiver: str, date8: str, control: int, body: list[str]
) -> str:
    """One interchange holding one functional group holding one transaction set.

    `date8` is CCYYMMDD. Segments end with `~` and a newline so that a reader's line numbers are
    segment numbers. SE counts the segments from ST to SE inclusive.
    """
    st = [f"ST*{transaction}*{control:04d}*{version}", *body]
    st.append(f"SE*{len(st) + 1}*{control:04d}")
    segs = [
        f"ISA*00*{'':10}*00*{'':10}*ZZ*{SENDER:15}*ZZ*{receiver:15}*{date8[2:]}*1200*^*00501*{control:09d}*0*T*:",
        f"GS*{functional_id}*{SENDER}*{receiver}*{date8}*1200*{control}*X*{version}",
        *st,
        f"GE*1*{control}",
        f"IEA*1*{control:09d}",
    ]
    return "".join(s + "~\n" for s in segs)
