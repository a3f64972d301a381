"""``MLP.summary()``: a Keras-like table of a model, its optimizer and its training so far.

The text is built from what the model already exposes (layer sizes, activations, the
optimizer's settings and state, ``history``, ``samples_seen`` and the last
``training_result``); nothing here changes the model. :func:`summary_text` returns it;
``MLP.summary`` prints it.
"""

import math

# What the state arrays of each update rule hold (see mlpcore._optimizers).
_STATE_NAMES = {
    "momentum": ("velocity v",),
    "nesterov": ("velocity v",),
    "adam": ("first moment m", "second moment s"),
}
_SCORE_NAMES = {"classification": "accuracy", "regression": "R^2"}


def _n(value):
    """An integer with thousands separators: 12,345."""
    return f"{value:,}"


def _table(rows):
    """Rows of cells as aligned text: a header, a rule, the rows, a rule.

    Text columns are left-aligned; columns whose cells are all numbers (or blank) are
    right-aligned.
    """
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    numeric = [all(not row[j] or row[j].replace(",", "").isdigit() or row[j] == "?"
                   for row in rows[1:]) for j in range(len(widths))]

    def line(row):
        cells = [cell.rjust(w) if num else cell.ljust(w)
                 for cell, w, num in zip(row, widths, numeric)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(rows[0]), rule, *(line(row) for row in rows[1:]), rule]


def _optimizer_line(optimizer, n_params=None):
    """'optimizer: adam (learning_rate=0.001, ...); 120 steps; state: ...'."""
    settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in optimizer.get_config().items())
    text = f"optimizer: {optimizer.rule} ({settings})"
    if n_params is None:
        return text
    steps = "iterations" if not optimizer.stochastic else "updates"
    text += f"; {_n(optimizer.t)} {steps} so far"
    names = _STATE_NAMES.get(optimizer.rule,
                             tuple(f"state {i}" for i in range(optimizer.n_state)))
    if optimizer.n_state:
        text += (f"; state arrays: {', '.join(names[:optimizer.n_state])} "
                 f"({_n(n_params)} values each)")
    else:
        text += "; no state arrays"
    return text


def _training_lines(model):
    """The training so far: epochs, samples seen, the last values, why the last call stopped."""
    history = model.history
    epochs = len(history.get("loss", []))
    unit = "epochs" if model.optimizer.stochastic else "iterations"
    if epochs == 0:
        return [f"training: none yet (0 {unit})"]
    lines = [f"training: {_n(epochs)} {unit}, {_n(model.samples_seen)} samples seen"]
    last = [f"loss {history['loss'][-1]:.6g}"]
    if history.get("val_loss"):
        last.append(f"val_loss {history['val_loss'][-1]:.6g}")
    if history.get("val_score"):
        score = ("subset accuracy" if getattr(model.targets, "multilabel", False)
                 else _SCORE_NAMES.get(model.targets.task, "score"))
        last.append(f"val_score {history['val_score'][-1]:.4f} ({score})")
    lr = history.get("lr", [])
    if lr and not math.isnan(lr[-1]):
        last.append(f"learning rate {lr[-1]:.3g}")
    lines.append("last epoch: " + ", ".join(last))
    result = getattr(model, "training_result", None)  # not kept in model files
    if result is not None:
        if result.stop_reason is None:
            why = "ran all its epochs"
        else:
            why = f"stopped ({result.stop_reason})"
            if result.message:
                why += f": {result.message}"
        if model.early_stopping and result.best_validation is not None:
            why += "; the weights of the best validation epoch were restored"
        lines.append(f"last call: {_n(result.epochs)} {unit}, {why}")
    return lines


def summary_text(model):
    """The summary of ``model`` as text (lines joined by newlines, no final newline).

    Parameters
    ----------
    model : mlpcore.MLP
        Trained, built (``build``) or not built yet; a model that is not built shows its
        hidden layers and optimizer settings, with ``?`` for the widths the data decides.

    Returns
    -------
    str
    """
    header = ["layer", "units", "activation", "weights", "biases", "parameters"]
    if model._network is None:
        output = model._requested_output or "by task"
        rows = [header, ["input", "?", "", "", "", ""]]
        for i, width in enumerate(model.hidden, 1):
            rows.append([f"hidden {i}", str(width), model.activation, "", "", ""])
        rows.append(["output", "?", output, "", "", ""])
        lines = ["MLP, not built yet: the input and output widths come from the data "
                 "(fit() or build(X, y) builds it)", *_table(rows)]
        lines.append(f"loss: {model._requested_loss or 'by task'}, L2 alpha {model.alpha:g}")
        lines.append(_optimizer_line(model.optimizer))
        lines.append("training: none yet")
        return "\n".join(lines)

    sizes = model.sizes
    task = model.targets.task
    if getattr(model.targets, "multilabel", False):
        what = f"multi-label classification, {sizes[-1]} labels"
    elif task == "classification":
        what = f"classification, {len(model.classes)} classes"
    else:
        what = f"regression, {sizes[-1]} output{'s' if sizes[-1] != 1 else ''}"
    rows = [header, ["input", str(sizes[0]), "", "", "", ""]]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        last = i == len(sizes) - 1
        rows.append(["output" if last else f"hidden {i}", str(fan_out),
                     model.output if last else model.activation,
                     f"({fan_in}, {fan_out})", f"({fan_out},)", _n((fan_in + 1) * fan_out)])
    lines = [f"MLP {'-'.join(map(str, sizes))}: {what}, {model.dtype.name}", *_table(rows)]
    lines.append(f"total parameters: {_n(model.n_params)} "
                 f"({_n(model.n_params * model.dtype.itemsize)} bytes)")
    lines.append(f"loss: {model.loss_name}, L2 alpha {model.alpha:g}")
    lines.append(_optimizer_line(model.optimizer, model.n_params))
    lines.extend(_training_lines(model))
    return "\n".join(lines)
