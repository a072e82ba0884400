"""Cleaning of raw Amazon text fields into single-line strings."""
import html


def clean_text(value) -> str:
    """Unescape HTML entities and collapse all whitespace (tabs, newlines) to single spaces.

    Lists (2018 meta stores ``description``/``category`` as lists, sometimes nested) are
    flattened and joined with spaces; ``None`` becomes ``""``.
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(filter(None, (clean_text(v) for v in value)))
    text = html.unescape(str(value))
    # str.split() with no argument also splits on \xa0 and other Unicode spaces, which
    # RecBole's token_seq splitting (on ' ') would otherwise keep inside tokens.
    return " ".join(text.split())
