"""Exit statuses and the one-line errors of the ``mlpcore`` command."""

import sys

PROG = "mlpcore"
EXIT_DATA = 1
EXIT_USAGE = 2
# stdout's reader went away: what a shell reports for a program stopped by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141


class CLIError(Exception):
    """An error reported as one line, ``mlpcore: error: <message>``, with an exit status.

    Parameters
    ----------
    message : str
    status : int, default EXIT_DATA
        The exit status: ``EXIT_DATA`` for a file or data error, ``EXIT_USAGE`` for options
        that do not go together.
    """

    def __init__(self, message, status=EXIT_DATA):
        super().__init__(message)
        self.status = status


def cannot_write(path, exc, what=None):
    """The CLIError for an OSError raised while writing ``path``.

    Parameters
    ----------
    path : str
    exc : OSError
    what : str, optional
        What was being written, e.g. ``"the model"``: "cannot write the model to PATH".

    Returns
    -------
    CLIError
    """
    target = path if what is None else f"{what} to {path}"
    return CLIError(f"cannot write {target}: {exc.strerror or exc}")


def one_line(message):
    """``message`` as text with every run of white space (newlines too) made one space."""
    return " ".join(str(message).split())


def report_error(message, status=EXIT_DATA):
    """Print ``mlpcore: error: <message>`` on stderr after any pending output; return status."""
    sys.stdout.flush()
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr, flush=True)
    return status


def show_warning(message, category, filename, lineno, file=None, line=None):
    """A ``warnings.showwarning`` that prints ``mlpcore: warning: <message>`` as one line."""
    print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr, flush=True)
