"""The one error type users see: a clear one-line message, exit status 2."""


class DilmbenchError(Exception):
    """A problem with the user's input or environment, reported as one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
