"""Reading the exporter's log: the messages of its logfmt lines."""

from __future__ import annotations

import json

_DECODER = json.JSONDecoder()


def messages(text: str) -> list[str]:
    """The ``msg`` of each logfmt line (quoted values unescaped); other lines as they are."""
    out = []
    for line in text.splitlines():
        at = line.find(" msg=")
        if at < 0:
            out.append(line)
            continue
        value = line[at + 5 :]
        if value.startswith('"'):
            decoded, _ = _DECODER.raw_decode(value)
            out.append(str(decoded))
        else:
            out.append(value.split(" ", 1)[0])
    return out
