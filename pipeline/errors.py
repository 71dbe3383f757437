"""The project's own errors: each names the bad value and says what to do about it.

Each error class carries the exit code the ``instrumentd`` command ends with when it stops on one.
"""

EXIT_OK = 0
EXIT_ERROR = 1  # failed while running (also Python's code for an unexpected error and its traceback)
EXIT_USAGE = 2  # bad flags, settings or input named on the command line (argparse's own code)
EXIT_STARTUP = 3  # a service could not start: endpoint taken, log folder locked or unwritable, no memory or files
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class InstrumentdError(Exception):
    """Base of every error a user can cause; the command line prints it as one line and exits with
    :attr:`exit_code`."""

    exit_code = EXIT_USAGE


class ParameterError(InstrumentdError, ValueError):
    """A parameter outside its allowed range or of the wrong kind."""


class AudioError(InstrumentdError):
    """Audio that cannot be read, decoded or used."""
