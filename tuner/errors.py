"""The one exception type for bad user input; the CLI turns it into one line and exit code 2."""


class TunerError(ValueError):
    """Bad input (file, column, row, field, name or bound); the message names it."""
