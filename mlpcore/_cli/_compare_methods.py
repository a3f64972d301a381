"""``mlpcore compare-methods``: gradient descent vs SGD vs mini-batches, the convergence plot.

The tutorial's network (sigmoid units, J = 1/(2N) sum (a - y)^2) is trained on the
built-in digits three ways from the same initial weights with plain updates
W <- W - rate dJ/dW, and J on the whole training set is drawn against epochs and seconds.
"""

import textwrap
import time

import numpy as np

import mlpcore
from mlpcore._cli._arguments import (Formatter, add_output_options, hidden_sizes, paragraphs,
                                     positive_float, positive_int, show_hidden)
from mlpcore._cli._errors import CLIError, cannot_write
from mlpcore._cli._output import out, show_progress

COMPARE_DEFAULTS = dict(hidden=(30,), epochs=100, learning_rate=3.0, batch_size=32,
                        points_per_epoch=10, seed=0)


def add_parser(subparsers):
    """Add the ``compare-methods`` command to the ``mlpcore`` subparsers."""
    c = COMPARE_DEFAULTS
    p = subparsers.add_parser(
        "compare-methods", formatter_class=Formatter,
        help="gradient descent vs SGD vs mini-batches: the convergence plot",
        description=paragraphs(f"""\
            Train the tutorial's network on the built-in digits (all 1,797, pixels / 16) three
            ways from the same initial weights, with the same learning rate and plain
            gradient-descent updates W <- W - rate * dJ/dW:

              gradient descent     one update per epoch, on all samples (batch 'full')
              stochastic GD        one update per sample (batch 1), reshuffled every epoch
              mini-batch GD        one update per --batch-size samples, reshuffled

            The network is 64-{show_hidden(c['hidden'])}-10 with sigmoid hidden and output
            units and the cost J = 1/(2N) sum (a - y)^2 against one-hot targets.

            What is plotted: J on the whole training set, measured after every epoch for
            gradient descent and --points-per-epoch times per epoch for the other two. To
            measure inside an epoch, each method runs as consecutive mlpcore.fit calls on
            slices of the epoch's shuffled samples, each continuing from the previous
            weights with init=; with the plain update rule this is exactly the training of
            one uninterrupted run over the same order. Left panel: J against epochs. Right
            panel: the same J against seconds of training, timed on a separate
            uninterrupted fit of each method (one BLAS thread for all three), so neither
            the J measurements nor the per-call overhead of the sliced runs counts. (The
            per-epoch loss in model.history averages the batch losses of an epoch, which
            would hide SGD's noise; hence the measurements.)

            Writes a PNG with two panels. matplotlib is optional: without it (pip install
            'mlpcore[plot]') the numbers are printed as a table instead."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore compare-methods                           # writes convergence.png
              mlpcore compare-methods --output docs/convergence.png
              mlpcore compare-methods --epochs 20 --table       # quick, and print the numbers
              mlpcore compare-methods --learning-rate 1 --batch-size 10"""))
    p.add_argument("-o", "--output", default="convergence.png", metavar="PNG",
                   help="the picture to write (default convergence.png)")
    p.add_argument("--epochs", type=positive_int, default=c["epochs"], metavar="N",
                   help=f"epochs for each method (default {c['epochs']})")
    p.add_argument("--hidden", type=hidden_sizes, default=c["hidden"], metavar="SIZES",
                   help=f"hidden layer widths (default {show_hidden(c['hidden'])})")
    p.add_argument("--learning-rate", "--lr", type=positive_float, default=c["learning_rate"],
                   metavar="RATE", help=f"the same for the three (default {c['learning_rate']:g})")
    p.add_argument("--batch-size", type=positive_int, default=c["batch_size"], metavar="N",
                   help=f"the mini-batch size (default {c['batch_size']})")
    p.add_argument("--points-per-epoch", type=positive_int, default=c["points_per_epoch"],
                   metavar="N", help="J measurements per epoch for SGD and mini-batches "
                                     f"(default {c['points_per_epoch']})")
    p.add_argument("--seed", type=int, default=c["seed"], metavar="N",
                   help=f"seed of the initial weights and the shuffling (default {c['seed']})")
    p.add_argument("--table", action="store_true",
                   help="also print the numbers when the picture is drawn")
    add_output_options(p)
    p.set_defaults(func=run)


# -- training and measuring -------------------------------------------------------------------
def initial_weights(X, Y, hidden, seed):
    """The shared starting point: ``(weights, biases)`` of the network mlpcore.fit would draw.

    Glorot-uniform for sigmoid units from ``seed``, as ``mlpcore.fit(..., seed=seed)``
    draws them, copied out of a model built (not trained) on (X, Y).
    """
    model = mlpcore.MLP(hidden, activation="sigmoid", output="sigmoid", loss="mse", seed=seed)
    model.build(X, Y)
    return [w.copy() for w in model.weights], [b.copy() for b in model.biases]


def plain_fit(X, Y, init, batch, opts, epochs=1, shuffle=False, **extra):
    """Plain gradient-descent epochs (W <- W - rate dJ/dW) on the rows of X, from ``init``.

    ``batch`` None is gradient descent on all rows; one BLAS thread, float64.
    """
    return mlpcore.fit(
        X, Y, hidden=opts.hidden, activation="sigmoid", output="sigmoid", loss="mse",
        batch_size=None if batch is None else min(batch, len(X)), epochs=epochs,
        learning_rate=opts.learning_rate, shuffle=shuffle, init=init, optimizer="sgd",
        dtype=np.float64, n_threads=1, **extra)


def initial_cost(X, Y, init, opts):
    """J at the initial weights: the loss a full-batch epoch records before its update."""
    return plain_fit(X, Y, init, None, opts).history["loss"][0]


def checkpointed_costs(X, Y, init, batch, J0, opts):
    """J on all of X at the start and after every chunk of updates, for ``opts.epochs`` epochs.

    Each epoch visits the samples in a fresh random order (gradient descent: in order, which
    makes no difference to a full-batch step), split into chunks of whole batches, about
    ``opts.points_per_epoch`` per epoch; each chunk is one ``mlpcore.fit(..., epochs=1,
    shuffle=False, init=<current weights>)``. The plain update rule has no state, so this is
    the same training as one uninterrupted run over the same order. J is ``model.loss``:
    the tutorial's 1/(2N) sum (a - y)^2 for this mse network without L2.

    Returns
    -------
    ndarray of shape (M, 2)
        Rows (epochs so far, J).
    """
    n = len(X)
    if batch is None:
        chunk_rows = n
    else:
        n_batches = -(-n // batch)
        chunk_rows = -(-n_batches // min(opts.points_per_epoch, n_batches)) * batch
    rng = np.random.default_rng(opts.seed + 1)
    weights, biases = init
    points = [(0.0, J0)]
    for epoch in range(opts.epochs):
        if batch is None:
            Xe, Ye = X, Y
        else:
            order = rng.permutation(n)
            Xe, Ye = X[order], Y[order]
        for start in range(0, n, chunk_rows):
            model = plain_fit(Xe[start:start + chunk_rows], Ye[start:start + chunk_rows],
                              (weights, biases), batch, opts)
            if not model.history["loss"]:
                raise CLIError("training diverged (the cost became NaN or infinite); try a "
                               "smaller --learning-rate")
            weights, biases = model.weights, model.biases
            points.append((epoch + min(start + chunk_rows, n) / n, model.loss(X, Y)))
    return np.array(points)


def timed_run(X, Y, init, batch, opts):
    """Seconds at the end of each epoch of one uninterrupted fit: (epochs + 1,) from 0.

    The per-epoch ``logs["time"]`` of ``fit(callback=...)``; if the fit stopped early
    (divergence), the total time spread evenly over the epochs instead (every epoch does
    the same work).
    """
    times = [0.0]

    def record(epoch, model, logs):
        times.append(float(logs["time"]))

    start = time.perf_counter()
    plain_fit(X, Y, init, batch, opts, epochs=opts.epochs, shuffle=batch is not None,
              seed=opts.seed + 1, callback=record)
    total = time.perf_counter() - start
    if len(times) != opts.epochs + 1:
        times = list(np.linspace(0.0, total, opts.epochs + 1))
    return np.array(times)


def run_method(X, Y, init, batch, J0, opts):
    """(epoch, seconds, J) rows for one method.

    J comes from the checkpointed run, seconds from an uninterrupted run of the same method,
    so neither the J measurements nor the per-call overhead of the checkpoints count as
    training time.
    """
    pts = checkpointed_costs(X, Y, init, batch, J0, opts)
    epoch_times = timed_run(X, Y, init, batch, opts)
    seconds = np.interp(pts[:, 0], np.arange(opts.epochs + 1), epoch_times)
    return np.column_stack([pts[:, 0], seconds, pts[:, 1]])


# -- the picture and the table ----------------------------------------------------------------
def draw(results, labels, opts, n, path):
    """Two panels, J against epochs and against seconds; False if matplotlib is missing.

    Parameters
    ----------
    results : dict
        Method key ('gd', 'sgd', 'minibatch') -> (epoch, seconds, J) rows.
    labels : dict
        Method key -> legend text.
    opts : argparse.Namespace
        The command's options (hidden widths and learning rate go into the title).
    n : int
        Training rows.
    path : str
        The PNG to write.

    Returns
    -------
    bool
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax_epoch, ax_time = fig.subplots(1, 2, sharey=True)
    colors = {"gd": "tab:blue", "sgd": "tab:orange", "minibatch": "tab:green"}
    for key, pts in results.items():
        style = dict(color=colors[key], label=labels[key], linewidth=1.1)
        ax_epoch.plot(pts[:, 0], pts[:, 2], **style)
        ax_time.plot(pts[:, 1], pts[:, 2], **style)
    ax_epoch.set_yscale("log")
    ax_epoch.set_ylabel("cost J on the whole training set (log scale)")
    for ax in (ax_epoch, ax_time):
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlim(left=0)
    ax_epoch.set_xlabel("epochs (passes over the training set)")
    ax_epoch.set_title("cost against epochs")
    ax_time.set_xlabel("seconds of training (one BLAS thread)")
    ax_time.set_title("cost against wall-clock time")
    fig.legend(*ax_epoch.get_legend_handles_labels(), loc="outside lower center", ncols=3,
               frameon=False)
    sizes = "-".join(map(str, (64, *opts.hidden, 10)))
    fig.suptitle(f"{n} digits, {sizes} sigmoid network, J = 1/(2N) \u03a3 (a \u2212 y)\u00b2, "
                 f"learning rate {opts.learning_rate:g} for all three, same initial weights")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    return True


def print_table(results, labels, epochs):
    """J and seconds at whole epochs (at most about 25 rows)."""
    keys = list(results)
    step = max(1, epochs // 25)
    wanted = sorted({0, *range(step, epochs + 1, step), epochs})
    out(f"{'epoch':>6}" + "".join(f"{labels[k].split(' (')[0]:>24}" for k in keys))
    out(f"{'':>6}" + "".join(f"{'J':>13}{'seconds':>11}" for _ in keys))
    rows = {k: {int(round(e)): (sec, J) for e, sec, J in results[k]
                if abs(e - round(e)) < 1e-9} for k in keys}
    for e in wanted:
        out(f"{e:>6}" + "".join(f"{rows[k][e][1]:>13.5f}{rows[k][e][0]:>11.3f}" for k in keys))


def run(args):
    """``mlpcore compare-methods``: train three ways, then draw (or print) the costs."""
    from threadpoolctl import threadpool_limits

    from mlpcore.datasets import load_digits

    X, y = load_digits()
    X = X / 16.0
    Y = np.eye(10)[y]
    sizes = (X.shape[1], *args.hidden, Y.shape[1])
    init = initial_weights(X, Y, args.hidden, args.seed)
    methods = {"gd": None, "sgd": 1, "minibatch": args.batch_size}
    labels = {"gd": f"gradient descent (batch = all {len(X)})",
              "sgd": "stochastic GD (batch = 1)",
              "minibatch": f"mini-batch GD (batch = {args.batch_size})"}
    progress = show_progress(args, default_on=True)
    out(f"digits: {len(X)} images, pixels / 16; network {'-'.join(map(str, sizes))}, sigmoid "
        f"units, J = 1/(2N) sum (a - y)^2; learning rate {args.learning_rate:g}, "
        f"{args.epochs} epochs each, same initial weights (seed {args.seed})")
    # One BLAS thread throughout: fit is told so for each method alike, and the thousands
    # of J measurements (forward passes on all samples) run several times faster that way
    # on a shared machine than with BLAS threads spinning against other processes.
    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        J0 = initial_cost(X, Y, init, args)
        for key, batch in methods.items():
            results[key] = run_method(X, Y, init, batch, J0, args)
    if progress:
        for key, batch in methods.items():
            pts = results[key]
            updates = args.epochs * (1 if batch is None else -(-len(X) // batch))
            out(f"{labels[key]:<36} {updates:>7} updates in {pts[-1, 1]:5.2f} s, "
                f"J {pts[0, 2]:.4f} -> {pts[-1, 2]:.4f}")
    drawn = draw(results, labels, args, len(X), args.output)
    if drawn:
        out(f"picture written to {args.output}")
    else:
        out("matplotlib is not installed, so no picture was drawn; install it with "
            "pip install 'mlpcore[plot]' (or pip install matplotlib). The numbers:")
    if not drawn or args.table:
        print_table(results, labels, args.epochs)
    return 0
