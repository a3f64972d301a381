"""``MLP.plot_history()``: the training curves of a model, drawn with matplotlib.

matplotlib is optional (``pip install "mlpcore[plot]"``) and imported only when a picture
is asked for, never when mlpcore is imported. The figure is a plain
:class:`matplotlib.figure.Figure`, not registered with pyplot: it needs no display and is
freed like any object (a notebook still shows it when it is the cell's value).
"""

from mlpcore._results import NotFittedError

INSTALL_HINT = 'pip install "mlpcore[plot]"'
_SCORE_NAMES = {"classification": "validation accuracy", "regression": "validation R^2"}


def import_matplotlib_figure():
    """``matplotlib.figure.Figure``, or an ImportError saying how to install matplotlib.

    Raises
    ------
    ImportError
        matplotlib is not installed (or cannot be imported); the message names
        ``pip install "mlpcore[plot]"``.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"plotting the training history needs matplotlib, which is not "
                          f"installed: {INSTALL_HINT} (or pip install matplotlib)") from exc
    return Figure


def plot_history(model, path=None):
    """Draw ``model.history``: the loss, and the validation loss and score when present.

    Parameters
    ----------
    model : mlpcore.MLP
        A trained model (at least one epoch in ``history``).
    path : str or os.PathLike, optional
        Also save the picture there; the format follows the extension (``.png``, ``.svg``,
        ``.pdf``, ...).

    Returns
    -------
    matplotlib.figure.Figure
        One panel (loss against epochs), or two when the history has a validation score
        (accuracy for classification, R^2 for regression).

    Raises
    ------
    ImportError
        matplotlib is not installed; the message says ``pip install "mlpcore[plot]"``.
    NotFittedError
        The model has not been trained, or its history is empty.
    """
    history = model.history  # NotFittedError before any fit
    loss = history.get("loss", [])
    if not loss:
        raise NotFittedError("the history is empty: there is nothing to plot before the "
                             "first epoch; call fit() first")
    Figure = import_matplotlib_figure()

    epochs = range(1, len(loss) + 1)
    step = "iteration" if not model.optimizer.stochastic else "epoch"
    score = history.get("val_score") or []
    fig = Figure(figsize=(10 if score else 6, 4), layout="constrained")
    axes = fig.subplots(1, 2 if score else 1, squeeze=False)[0]
    ax = axes[0]
    ax.plot(epochs, loss, label="training loss", color="C0")
    val_loss = history.get("val_loss") or []
    if val_loss:
        ax.plot(range(1, len(val_loss) + 1), val_loss, label="validation loss", color="C1")
    ax.set_xlabel(step)
    ax.set_ylabel(f"loss ({model.loss_name})")
    ax.set_title(f"MLP {'-'.join(map(str, model.sizes))}: loss per {step}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if score:
        ax = axes[1]
        name = _SCORE_NAMES.get(model.targets.task, "validation score")
        ax.plot(range(1, len(score) + 1), score, color="C2", label=name)
        ax.set_xlabel(step)
        ax.set_ylabel(name)
        ax.set_title(f"{name} per {step}")
        ax.grid(True, alpha=0.3)
        ax.legend()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
