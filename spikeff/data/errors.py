"""Exceptions raised by :mod:`spikeff.data`."""


class DataError(ValueError):
    """A dataset on disk is missing, malformed or does not match what spikeff expects.

    The message names the offending file or folder and what was expected there.
    """
