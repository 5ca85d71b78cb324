"""User-facing errors.

A `DreamtextError` carries one line that names the problem and what to do about it. The CLI prints it
without a traceback and exits with status 2; the Python API lets it propagate.
"""

EXIT_BAD_INPUT = 2


class DreamtextError(Exception):
    """An error caused by the user's input or environment, with a one-line explanation."""

    def __init__(self, message: str):
        if "\n" in message:
            raise ValueError("DreamtextError messages must be a single line")
        super().__init__(message)


class RunInterrupted(DreamtextError):
    """SIGTERM or Ctrl-C ended a run at a step boundary, after a checkpoint; `exit_code` says which."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        # A local batch's worker raises it into the parent: without this, unpickling it there fails (the exit
        # code is a second argument) and the pool reports itself broken instead of the job as interrupted.
        return type(self), (str(self), self.exit_code), self.__dict__
