"""The one exception type for problems a user can fix (bad file, bad option, missing model)."""


class DmcodecError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
