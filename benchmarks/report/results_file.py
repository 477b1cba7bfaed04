"""Read and write a results file: plain JSON, or compressed as ``.json.gz`` or ``.json.xz``.

A compressed results file is what gets committed beside a report, so
``session-proxy-bench report`` can regenerate it byte for byte.  Writing is
deterministic too: gzip without a file name or modification time (``mtime=0``),
xz with fixed settings, and the JSON with a fixed indentation, so the same
results give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
from pathlib import Path
from typing import Any

#: File name endings and the compression they mean.
COMPRESSED = (".gz", ".xz")


def read_results(path: Path) -> dict[str, Any]:
    """The results document in ``path`` (``.json``, ``.json.gz`` or ``.json.xz``).

    Raises :class:`OSError` for a file that cannot be read and :class:`ValueError`
    for one that is not a compressed or plain JSON object.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        elif path.suffix == ".xz":
            raw = lzma.decompress(raw)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise ValueError(f"not a {path.suffix} file: {exc}") from None
    document = json.loads(raw.decode("utf-8"))
    if not isinstance(document, dict):
        raise ValueError("a results file holds one JSON object")
    return document


def encode_results(results: dict[str, Any]) -> bytes:
    """The results as UTF-8 JSON, one-space indented (the runner's format)."""
    return (json.dumps(results, indent=1) + "\n").encode("utf-8")


def write_results(path: Path, results: dict[str, Any]) -> Path:
    """Write ``results`` to ``path``, compressed when its name ends in ``.gz`` or ``.xz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_results(results)
    if path.suffix == ".gz":
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0,
                           compresslevel=9) as out:
            out.write(data)
        data = buffer.getvalue()
    elif path.suffix == ".xz":
        data = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                             preset=9 | lzma.PRESET_EXTREME)
    path.write_bytes(data)
    return path
