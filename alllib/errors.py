"""Exceptions with messages that name the offending file or value and what was expected."""


class StudyError(Exception):
    """Base class of every error this library raises on purpose."""


class DataError(StudyError, ValueError):
    """The data on disk is not what the official C-NMC-2019 layout promises."""


class ConfigError(StudyError, ValueError):
    """A profile, parameter or override is impossible."""


class WeightsUnavailable(StudyError, RuntimeError):
    """ImageNet weights were asked for but cannot be obtained."""
