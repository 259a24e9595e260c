"""User-facing errors. Each one says what is wrong in one line; the CLI prints it without a
traceback and the Slicer panel shows it as one message."""


class IVSegError(Exception):
    """Base class of every error caused by the user's input rather than by a bug."""


class VolumeError(IVSegError):
    """A volume that cannot be used: missing, unreadable, empty, NaN, wrong dimensionality."""


class PromptError(IVSegError):
    """A prompt that cannot be applied: NaN, outside the volume, unknown command or kind."""


class PromptFileError(IVSegError):
    """A malformed or mismatched *.prompts.json file."""


class EngineError(IVSegError):
    """An engine that cannot be built or cannot do what was asked."""


class CheckpointError(IVSegError):
    """A weights file that is missing, unreadable or has the wrong keys."""
