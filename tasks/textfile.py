"""Is a raw file a readable CSV text at all? Checked before pandas sees it.

An empty file, a binary file named ``.csv`` (a zip, an image, a pickle), or a text in
another encoding than UTF-8 (Latin-1 from an old spreadsheet) would otherwise end in a
pandas or codec traceback. One streaming pass over the bytes (1 MiB blocks, so a file
of any size is checked in bounded memory) turns each into a :class:`DataValidationError`
naming the file, the rule and the offending lines. The file is only read.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from seqcast.errors import DataValidationError, Failure

BLOCK = 1 << 20
BOM = codecs.BOM_UTF8
MAGIC = {  # what a binary file most likely is, by its first bytes
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "gzip-compressed data (a .gz file needs the .gz suffix)",
    b"\x89PNG": "a PNG image",
    b"%PDF": "a PDF document",
    b"\x7fELF": "an executable",
    b"PAR1": "a Parquet file",
    b"SQLite format 3": "an SQLite database",
    b"\x80": "a Python pickle",
}


def open_bytes(path: Path) -> BinaryIO:
    """The file's bytes; ``.gz`` files are decompressed on the fly (as pandas does)."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def _fail(dataset: str, path: Path, rule: str, detail: str, examples: pd.DataFrame | None = None,
          count: int = 0, total: int = 0) -> DataValidationError:
    ex = examples if examples is not None else pd.DataFrame()
    return DataValidationError(dataset, [str(path)], [Failure(rule, None, count, total, ex, detail)])


def check_text_file(path: Path, dataset: str) -> None:
    """Raise for an empty, binary or non-UTF-8 file."""
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    size, first, bad = 0, b"", False
    try:
        with open_bytes(path) as fh:
            while block := fh.read(BLOCK):
                if not first:
                    first = block[:16]
                if b"\x00" in block:
                    what = next((name for magic, name in MAGIC.items() if first.startswith(magic)), "binary data")
                    at = size + block.index(b"\x00")
                    raise _fail(dataset, path, "text file (CSV)", f"not a text file: NUL byte at offset {at}; "
                                f"the content looks like {what}, not a CSV")
                size += len(block)
                if not bad:
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError:
                        bad = True
            if not bad:
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    bad = True
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise _fail(dataset, path, "gzip file", f"the .gz file cannot be decompressed ({err})") from None
    if size == 0 or not first.strip(BOM + b" \t\r\n"):
        raise _fail(dataset, path, "non-empty file", "the file is empty (0 data rows, no header)")
    if bad:
        raise _encoding_error(path, dataset)


def _encoding_error(path: Path, dataset: str) -> DataValidationError:
    """The slow path, only for a bad file: which lines are not UTF-8, shown as Latin-1."""
    rows, count, total = [], 0, 0
    with open_bytes(path) as fh:
        for number, raw in enumerate(fh, start=1):
            total += 1
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                count += 1
                if len(rows) < 5:
                    rows.append({"line": number, "byte": f"0x{raw[err.start]:02x} at column {err.start + 1}",
                                 "text (read as Latin-1)": raw.decode("latin-1").rstrip("\r\n")[:80]})
    examples = pd.DataFrame(rows).set_index("line")
    return _fail(dataset, path, "UTF-8 text encoding",
                 f"{count} line(s) are not valid UTF-8 (Latin-1 / Windows-1252?); convert the file, e.g. "
                 f"`iconv -f latin1 -t utf-8 IN > OUT`", examples, count, total)


def read_csv_chunks(path: Path, chunk_rows: int | None):
    """All columns as text (the parsers decide what is a number); a UTF-8 BOM is dropped."""
    kw = {"dtype": str, "keep_default_na": False, "encoding": "utf-8-sig"}
    if chunk_rows:
        return pd.read_csv(path, chunksize=int(chunk_rows), **kw)
    return iter([pd.read_csv(path, **kw)])
