"""The one rule for bad input: an error a person can fix is a LabError; the CLI prints it and exits USAGE_ERROR."""

USAGE_ERROR = 2  # exit status for bad input: a sweep file, a KEY=VALUE, missing data, a broken run folder


class LabError(Exception):
    """Bad input the user can fix; the message names the file or key and says what to do."""
