"""The project's own errors: each names the bad value and says what to do about it."""


class InstrumentdError(Exception):
    """Base of every error a user can cause; the command line prints it as one line."""


class ParameterError(InstrumentdError, ValueError):
    """A parameter outside its allowed range or of the wrong kind."""


class AudioError(InstrumentdError):
    """Audio that cannot be read, decoded or used."""
