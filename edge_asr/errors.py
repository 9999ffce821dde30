"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class EdgeAsrError(Exception):
    """A problem the user can fix (bad input, bad config, missing model); never a bug."""


class AudioError(EdgeAsrError):
    pass


class ConfigError(EdgeAsrError):
    pass


class ModelError(EdgeAsrError):
    pass
