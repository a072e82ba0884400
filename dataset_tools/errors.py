"""The single exception type the CLI turns into a one-line message."""


class DatasetToolError(ValueError):
    """Bad input data or arguments; the message names the file (and line) at fault."""
