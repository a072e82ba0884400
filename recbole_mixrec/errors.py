"""The plugin's user-facing errors: the CLI prints their message, never a traceback."""


class MixRecError(ValueError):
    """Bad input a user can fix: unknown model or dataset, missing or malformed data files."""
