"""What the commands print on stdout: report lines and the per-epoch progress lines."""

import sys


def out(*args):
    """Print a report line at once (flushed, so it interleaves with stderr and pipes)."""
    print(*args, flush=True)


def show_progress(args, default_on=False):
    """Whether to print per-epoch lines: --quiet wins, then --progress, else only on a terminal.

    ``default_on`` is for the commands whose progress is the point (digits,
    compare-methods): on unless --quiet.
    """
    if getattr(args, "quiet", False):
        return False
    if getattr(args, "progress", False) or default_on:
        return True
    return sys.stdout.isatty()


def format_number(x):
    """A loss or score for display: 4 decimals, or 4 significant digits when large."""
    if x is None:
        return "n/a"
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"


class EpochPrinter:
    """Prints one line per epoch; usable as ``fit(callback=...)`` (returns None: go on).

    Parameters
    ----------
    epochs : int
        The planned number of epochs, shown as ``epoch i/epochs``.
    score_name : str, default "val acc"
        The label of the validation score; a callback switches it to "val R2" when the
        model turns out to do regression.
    """

    def __init__(self, epochs, score_name="val acc"):
        self.epochs = epochs
        self.count = 0
        self.score_name = score_name
        self.width = len(str(epochs))

    def line(self, loss, val_loss=None, val_score=None, seconds=None):
        """Print the next epoch's line; None values are left out."""
        self.count += 1
        parts = [f"epoch {self.count:{self.width}d}/{self.epochs}",
                 f"loss {format_number(loss)}"]
        if val_loss is not None:
            parts.append(f"val loss {format_number(val_loss)}")
        if val_score is not None:
            parts.append(f"{self.score_name} {format_number(val_score)}")
        if seconds is not None:
            parts.append(f"{seconds:6.2f} s")
        out("  ".join(parts))

    def __call__(self, epoch, model, logs):
        logs = logs or {}
        if self.count == 0 and getattr(model, "classes", None) is None:
            self.score_name = "val R2"

        def number(key):
            value = logs.get(key)
            return None if value is None else float(value)

        self.line(number("loss"), number("val_loss"), number("val_score"), number("time"))
        return None
