"""What an id may hold, at every door (the API, the event stream, landing files): something
visible and no control character. A NUL, a line break or an escape sequence in an id would
reach Redis keys, logs and dashboards as is; anything else printable in any script (no-break
spaces, zero-width joiners) is a legitimate id.

Control characters: Unicode's Cc (C0, DEL, C1) and the line and paragraph separators."""

import re

_RANGES = [(0x00, 0x1F), (0x7F, 0x9F), (0x2028, 0x2029)]

# The same class for Python's re and for DuckDB's (RE2) regexp functions
CONTROL = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in _RANGES) + "]")
CONTROL_RE2 = "[" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in _RANGES) + "]"
REFUSED = "an id needs a visible character and no control characters"
CONTROL_REFUSED = "no control characters (line breaks, NUL, escapes) in an id"


def is_id(value: str) -> bool:
    """Not blank (spaces only, as ingest's trim() reads it) and no control character."""
    return bool(value.strip(" ")) and not CONTROL.search(value)
