"""Line-numbered reading of (optionally gzipped) raw files."""
import ast
import gzip
import json
import os

from tqdm import tqdm

from .errors import DatasetToolError


def open_text(path):
    """Open ``path`` for reading text, transparently un-gzipping ``*.gz`` files."""
    if not os.path.isfile(path):
        raise DatasetToolError(f"{path}: no such file")
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def iter_lines(path, desc):
    """Yield ``(line_number, stripped_line)`` for non-blank lines, with a progress bar."""
    name = os.path.basename(path)
    with open_text(path) as handle:
        try:
            # disable=None: the bar only shows on a terminal, not in CI logs or tests.
            for number, line in enumerate(tqdm(handle, desc=desc, unit=" lines", disable=None), 1):
                line = line.strip()
                if line:
                    yield number, line
        except (OSError, EOFError, UnicodeDecodeError) as exc:  # truncated gzip, bad bytes
            raise DatasetToolError(f"{name}: unreadable ({exc})") from None


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
