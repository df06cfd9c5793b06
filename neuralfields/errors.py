"""Exceptions whose message is meant for the user, printed as one line by the scripts."""


class NeuralFieldsError(Exception):
    """Bad input or an unrecoverable run state, described in one line."""


class NonFiniteLossError(NeuralFieldsError):
    """The training loss became NaN or infinite."""
