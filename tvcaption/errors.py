"""Errors a user can cause. Each message is one line naming the file (or thing) and the fix."""


class TvcaptionError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits non-zero, never a traceback."""


class ConfigError(TvcaptionError, ValueError):
    """A user error in the configuration file, environment or a flag (one clear line)."""


class VideoError(TvcaptionError):
    """A recording that cannot be read (missing, not a video, no video stream, corrupt)."""


class CheckpointError(TvcaptionError):
    """A model checkpoint that is missing, tampered with, or not a tvcaption checkpoint."""


class DatabaseError(TvcaptionError):
    """A database that cannot be opened, migrated or written."""


class MissingDatabaseError(DatabaseError):
    """A command that only reads (search, export, db current) named a database that does not exist."""


class ModelLoadError(TvcaptionError):
    """The analysers' models failed to load (in the background, while the first recording was
    decoded): no recording can be indexed, so the batch stops instead of failing each file."""
