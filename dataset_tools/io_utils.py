"""Line-numbered reading of (optionally gzipped) raw files."""
import ast
import gzip
import json
import os

from tqdm import tqdm

from .errors import DatasetToolError


def open_binary(path):
    """Open ``path`` for reading bytes, transparently un-gzipping ``*.gz`` files."""
    if not os.path.isfile(path):
        raise DatasetToolError(f"{path}: no such file")
    try:
        return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")
    except OSError as exc:  # e.g. no read permission
        raise DatasetToolError(f"{path}: cannot read ({exc.strerror})") from None


def decode_line(raw: bytes, name, number) -> str:
    """``raw`` as UTF-8 text; a bad byte is an error naming file, line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetToolError(
            f"{name} line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})") from None


def decode_text(data: bytes, name) -> str:
    """A whole file's bytes as UTF-8 text, naming the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DatasetToolError(f"{name} line {number}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column})") from None


def iter_raw_lines(path, desc):
    """Yield ``(line_number, line)`` for every line, blank ones included, without its line break.

    Bytes are decoded line by line (not in the reader's chunks) so a bad byte is reported
    on its own line; a progress bar shows on a terminal only.
    """
    name, number = os.path.basename(path), 0
    with open_binary(path) as handle:
        try:
            # disable=None: the bar only shows on a terminal, not in CI logs or tests.
            for number, raw in enumerate(tqdm(handle, desc=desc, unit=" lines", disable=None), 1):
                yield number, decode_line(raw, name, number).rstrip("\r\n")
        except (OSError, EOFError) as exc:  # truncated gzip, unreadable disk
            raise DatasetToolError(f"{name}: unreadable after line {number} ({exc})") from None


def iter_lines(path, desc):
    """Yield ``(line_number, stripped_line)`` for non-blank lines, with a progress bar."""
    for number, line in iter_raw_lines(path, desc):
        line = line.strip()
        if line:
            yield number, line


def check_utf8(path):
    """Raise the file/line error of the first non-UTF-8 line of ``path``, if it has one."""
    for _ in iter_raw_lines(path, "checking"):
        pass


def iter_records(path, desc):
    """Yield ``(line_number, dict)`` from a one-object-per-line file.

    Lines are strict JSON or, as in some 2018 meta files, Python dict literals.
    """
    name = os.path.basename(path)
    for number, line in iter_lines(path, desc):
        try:
            record = json.loads(line)
        except ValueError:
            try:
                record = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise DatasetToolError(f"{name} line {number}: not JSON nor a Python literal") from None
        if not isinstance(record, dict):
            raise DatasetToolError(f"{name} line {number}: expected an object, got {type(record).__name__}")
        yield number, record
