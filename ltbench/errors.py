"""User-facing errors: the CLI prints their message and exits non-zero, with no traceback."""


class LtbenchError(Exception):
    """A problem the user can fix (bad input, missing data, unknown name). The message says what and how."""


class DivergedError(LtbenchError):
    """Training produced a non-finite loss; nothing is recorded as a result."""
