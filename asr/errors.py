"""Named errors: what users see instead of stack traces."""


class AsrError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AsrError):
    """A configuration file or value is invalid."""


class AudioError(AsrError):
    """An audio file or array cannot be used; names the file and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ManifestError(AsrError):
    """A data manifest or Kaldi data directory is malformed."""


class TokenizerError(AsrError):
    """Text cannot be tokenized, or a tokenizer file is invalid."""


class CheckpointError(AsrError):
    """A model or training checkpoint is missing, truncated or tampered with."""


class VadModelError(AsrError):
    """The voice activity detector's model (Silero VAD) cannot be loaded."""


class EnrollmentError(AsrError):
    """A voice sample cannot be enrolled (too little speech in it), or the model cannot follow one."""
