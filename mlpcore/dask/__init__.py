"""Train and predict on data spread over a Dask cluster (``pip install "mlpcore[dask]"``).

>>> from dask.distributed import Client                      # doctest: +SKIP
>>> import dask.dataframe as dd, mlpcore.dask                # doctest: +SKIP
>>> client = Client()                                        # doctest: +SKIP
>>> df = dd.read_parquet("data/*.parquet")                   # doctest: +SKIP
>>> model = mlpcore.dask.fit(df, "label", hidden=(128,), optimizer="lbfgs")  # doctest: +SKIP
>>> labels = mlpcore.dask.predict(model, df.drop(columns="label"))  # doctest: +SKIP

The partitions stay on the workers, converted once into the engine's arrays and spread
evenly over them; each iteration sends the parameters once to each worker, and every
partition returns its weighted loss and gradient sums, reduced in a fixed order (see
:mod:`mlpcore.dask._methods` for the maths). The model
returned is an ordinary :class:`mlpcore.MLP`: it pickles, saves and predicts without Dask.
"""

import math
import os
import warnings

import numpy as np

import dask
import dask.array as da

from mlpcore._base import batch_rows
from mlpcore._model import MLP
from mlpcore._scaling import Scaling
from mlpcore._training import train
from mlpcore._validation import mean_one
from mlpcore.dask import _data
from mlpcore.dask._methods import Cluster, DistributedGD, DistributedLBFGS, ModelAveraging

__all__ = ["fit", "predict", "predict_proba", "score", "forward"]

_FIT_ONLY = ("sample_weight", "validation_data")


def _client(client):
    """(client, whether it was started here): the given one, the current one, or a new
    local cluster with one single-threaded worker per core."""
    from distributed import Client, LocalCluster, get_client

    if client is not None:
        return client, False
    try:
        return get_client(), False
    except ValueError:
        cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=":0")
        return Client(cluster), True


def fit(X, Y, *, client=None, sync_every=1, persist=True, shuffle=False, **options):
    """Train a multilayer perceptron on data spread over a Dask cluster.

    Takes every option of :func:`mlpcore.fit` and returns an ordinary :class:`mlpcore.MLP`.
    With ``batch_size=None`` (full-batch gradient descent, any update rule) or
    ``optimizer='lbfgs'`` the result equals ``mlpcore.fit`` on the gathered data up to
    floating-point rounding (about 1e-12 relative in float64), whatever the number of
    workers and however the rows are partitioned: each iteration the partitions return
    their weighted sums ``S_p = sum_{i in p} w_i l_i``, ``G_p = sum_{i in p} w_i grad l_i``
    and ``W_p = sum_{i in p} w_i``, and

        J = (sum_p S_p + alpha/2 sum_l ||W_l||^2) / sum_p W_p,
        grad J = sum_p G_p / sum_p W_p + alpha W_l / sum_p W_p (weights only),

    summed in a fixed order by partition index. With an integer ``batch_size`` every
    partition trains by itself from the same parameters for ``sync_every`` epochs, then the
    parameters and optimizer state are averaged weighted by ``W_p`` (synchronous model
    averaging; with one partition exactly ``mlpcore.fit``).

    Parameters
    ----------
    X : dask.array.Array of shape (N, D) or dask.dataframe.DataFrame
        Chunked by rows (column chunks are merged). A DataFrame's column names are the
        model's feature names.
    Y : dask array or Series with X's row partitions, a NumPy array (cut to X's
        partitions), or the name of a column of the DataFrame X (taken out of the features)
    client : distributed.Client, optional
        Default: the current client, else a local cluster (one worker per core) started for
        this call and closed after it.
    sync_every : int or float, default 1
        Stochastic training: epochs between averagings (an integer), or 1/R for R
        averagings per epoch. Ignored by the exact ways.
    persist : bool, default True
        Keep the converted partitions in the workers' memory. False: read and convert them
        from their source at every pass (every iteration, or every averaging round), for
        data bigger than the cluster's memory; the result is the same.
    shuffle : bool, default False
        Shuffle the rows across partitions once before training (``dask.dataframe``'s
        shuffle; needs a DataFrame or is done by a random permutation of a dask array).
        Stochastic training shuffles within partitions only, so data sorted by label should
        be shuffled once, here or at ingestion.
    **options
        Everything :func:`mlpcore.fit` takes (``hidden``, ``optimizer``, ``batch_size``,
        ``sample_weight`` (like Y), ``validation_data`` (dask collections or arrays; gathered
        to the client, where the driver evaluates it after each epoch), ...).

    Returns
    -------
    MLP

    Raises
    ------
    TypeError
        X is not a dask collection.
    ValueError
        Unknown chunk sizes, partitions of X, Y and sample_weight that do not line up, a
        target column that X does not have, or anything :func:`mlpcore.fit` refuses.
    """
    sample_weight = options.pop("sample_weight", None)
    validation_data = options.pop("validation_data", None)
    model = MLP(**options)
    if not isinstance(persist, bool):
        raise TypeError(f"persist must be True or False, got {persist!r}")
    if isinstance(sync_every, bool) or not _data.is_number(sync_every) or not (
            math.isfinite(sync_every) and sync_every > 0):
        raise ValueError(f"sync_every must be a positive number of epochs, got {sync_every!r}")
    client, own = _client(client)
    try:
        if shuffle:
            X, Y, sample_weight = _shuffle(X, Y, sample_weight, model.seed)
        return _fit(client, model, X, Y, sample_weight, validation_data, sync_every, persist)
    finally:
        if own:
            cluster = client.cluster
            client.close()
            cluster.close()


def _shuffle(X, Y, sample_weight, seed):
    rng = np.random.default_rng(seed)
    if _data._is_dataframe(X):
        if not isinstance(Y, str) or sample_weight is not None:
            raise ValueError("shuffle=True with a DataFrame needs Y as the name of its target "
                             "column (and sample weights as a column of X is not supported)")
        key = "__mlpcore_shuffle__"
        X = X.map_partitions(_with_random_key, key, int(rng.integers(2**31)))
        X = X.shuffle(key, npartitions=X.npartitions).drop(columns=key)
        return X, Y, sample_weight
    if not _data._is_dask_array(X):
        raise TypeError("X must be a dask array or DataFrame")
    perm = rng.permutation(X.shape[0])
    chunks = X.chunks[0]
    X = X[perm].rechunk({0: chunks})

    def take(A):
        if A is None:
            return None
        return A[perm].rechunk({0: chunks}) if _data._is_dask_array(A) else np.asarray(A)[perm]

    return X, take(Y), take(sample_weight)


def _with_random_key(df, key, seed):
    """The partition with a column of uniform random numbers (seeded by the partition's
    first index and length), to shuffle the rows on."""
    import pandas as pd

    first = int(pd.util.hash_pandas_object(df.index[:1]).iloc[0]) % 2**31 if len(df) else 0
    rng = np.random.default_rng([seed, first, len(df)])
    return df.assign(**{key: rng.random(len(df))})


def _fit(client, model, X, Y, sample_weight, validation_data, sync_every, persist):
    blocks = _data.blocks(client, X, Y, sample_weight)
    if blocks.y is None:
        raise ValueError("Y is required")
    # What the targets are, from every partition (a distributed unique of the labels).
    summaries = client.gather(client.compute(
        [dask.delayed(_data.target_summary)(y, model._requested_output, model._requested_loss,
                                            model.task) for y in blocks.y]))
    y_sample, classes, counts = _data.combine_summaries(
        summaries, model._requested_output, model._requested_loss, model.task)
    x_head = client.compute(dask.delayed(_data.head)(blocks.x[0])).result()
    if len(x_head) == 0:
        nonempty = next((i for i, s in enumerate(summaries) if s["rows"]), None)
        if nonempty is None:
            raise ValueError("X has no rows")
        x_head = client.compute(dask.delayed(_data.head)(blocks.x[nonempty])).result()
    if y_sample is None:  # classification by labels: the classes decide
        y_sample = classes[:1]
    with warnings.catch_warnings():
        if model.scale is not None:  # scaled below from all the data
            warnings.simplefilter("ignore")
        model._build(x_head, y_sample if classes is None else classes, classes=classes)
    if model.scale is not None:
        model.scaling = _scaling(client, blocks, model.scale)
    per_class = _data.per_class_weights(model, counts)
    # Validation: given (gathered to the client), or held out within every partition.
    split = None
    if validation_data is None and (model.validation_fraction is not None
                                    or model.early_stopping):
        split = (model.validation_fraction or 0.1, int(model._rng.integers(2**63)))
    shipped = _plain_copy(model)
    prepared = [dask.delayed(_data.prepare, pure=False)(
        shipped, x, y, w, per_class, None if split is None else (*split, p))
        for p, (x, y, w) in enumerate(zip(blocks.x, blocks.y, blocks.sw))]
    if split is not None:
        val_parts = [dask.delayed(lambda r: r[1])(p) for p in prepared]
        prepared = [dask.delayed(lambda r: r[0])(p) for p in prepared]
    parts = client.compute(prepared) if persist else prepared
    stats = client.gather(client.compute(
        [dask.delayed(_data.part_stats)(p) for p in prepared]) if not persist else
        [client.submit(_data.part_stats, f, pure=False) for f in parts])
    rows = [r for r, _ in stats]
    weights = [w for _, w in stats]
    if sum(rows) == 0:
        raise ValueError("X has no rows")
    if persist:
        _balance(client, parts, rows)
    if sample_weight is not None or per_class is not None:
        if not sum(weights) > 0:
            raise ValueError("sample_weight must have a positive sum" if per_class is None
                             else "class and sample weights leave no sample with positive "
                             "weight")
    validation = None
    if validation_data is not None:
        validation = model._validation_arrays(_gathered(client, validation_data))
    elif split is not None:
        pieces = client.gather(client.compute(val_parts))
        Xv = np.concatenate([p[0] for p in pieces])
        Yv = np.concatenate([p[1] for p in pieces])
        # Mean 1 over the validation rows, as the single machine's split (see MLP._train).
        swv = None if pieces[0][2] is None else mean_one(
            np.concatenate([p[2] for p in pieces]), model.dtype)
        validation = (Xv, Yv, swv)
    cluster = Cluster(client, parts, persist, rows, weights)
    epochs = model.epochs
    opt = model.optimizer
    if not opt.stochastic:
        method = DistributedLBFGS(model, cluster, epochs)
    elif model.batch_size is None:
        method = DistributedGD(model, cluster)
    else:
        batch = batch_rows(model.batch_size, sum(rows))
        method = ModelAveraging(model, cluster, batch, sync_every, epochs)
    model.training_result = train(model, method, epochs, validation)
    return model


def _balance(client, parts, rows):
    """Spread the persisted partitions evenly over the workers, by rows.

    Dask places the partitions where it computed them, often unevenly (3 of 4 partitions on
    one of two workers), and every iteration then waits for the busiest worker. Here the
    partitions stay where they are up to each worker's fair share of the rows, and the
    others are copied once to the workers with the fewest (``client.replicate``: a copy
    made by the scheduler, which work stealing cannot undo as it could a task; the first
    copy stays, since Dask cannot move data, and either holder may then compute the
    partition, so the scheduler can also even out a slow worker). A lost copy is recomputed
    like any result. Only placement changes: the sums, and so the results, do not depend
    on it.

    Returns
    -------
    dict
        The partitions copied, by the worker they were copied to (for tests).
    """
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    if len(workers) < 2 or len(parts) < 2:
        return {}
    who = client.who_has(parts)
    holders = [list(who.get(f.key, ())) for f in parts]
    load = dict.fromkeys(workers, 0)
    fair = sum(rows) / len(workers)
    moves = []
    # Largest partitions first: each counts for one of its holders while that worker is
    # within its fair share (plus half the partition, so an even split is never undone).
    for p in sorted(range(len(parts)), key=lambda p: -rows[p]):
        kept = next((w for w in sorted(holders[p], key=lambda w: load.get(w, 0))
                     if w in load and load[w] + rows[p] / 2 <= fair), None)
        if kept is not None:
            load[kept] += rows[p]
        else:
            moves.append(p)
    copies = {}
    for p in moves:
        target = min(workers, key=lambda w: (load[w], w))
        load[target] += rows[p]
        if target not in holders[p]:
            copies.setdefault(target, []).append(p)
    for target, moved in copies.items():
        client.replicate([parts[p] for p in moved], n=1, workers=[target])
    return copies


def _plain_copy(model):
    """The model without what may not pickle (callback, callable schedule, init arrays):
    what the tasks need to check, convert and predict (``get_state``/``from_state``)."""
    return MLP.from_state(*model.get_state())


def _gathered(client, validation_data):
    if not isinstance(validation_data, (tuple, list)):
        raise TypeError("validation_data must be a tuple (X_val, Y_val) or (X_val, Y_val, "
                        f"weights), got {type(validation_data).__name__}")
    out = []
    for part in validation_data:
        if _data._is_dask(part):
            part = client.compute(part).result()
        out.append(part)
    return tuple(out)


def _scaling(client, blocks, how):
    """The model's input scaling from all rows: per-column mean and standard deviation (two
    passes: sums, then squared deviations from the mean), or minimum and maximum."""
    sums = client.gather(client.compute(
        [dask.delayed(_data.column_sums)(x, blocks.frame) for x in blocks.x]))
    n = sum(s[0] for s in sums)
    if how == "standard":
        shift = np.sum([s[1] for s in sums], axis=0) / n
        squares = client.gather(client.compute(
            [dask.delayed(_data.column_squares)(x, blocks.frame, shift) for x in blocks.x]))
        scale = np.sqrt(np.sum(squares, axis=0) / n)
    else:
        shift = np.min([s[2] for s in sums], axis=0)
        scale = np.max([s[3] for s in sums], axis=0) - shift
    scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    return Scaling(np.asarray(shift, dtype=np.float64), np.asarray(scale, dtype=np.float64))


# -- inference, block by block --------------------------------------------------------------------
def _probe(model, what):
    """Shape, dtype of ``what`` for one row (to describe the lazy result)."""
    X = np.zeros((1, model.n_features), dtype=model.dtype)
    if model.feature_names is not None:
        import pandas as pd

        X = pd.DataFrame(X, columns=model.feature_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(model, what)(X)


def _lazy(model, X, what):
    model._require_built()
    model = _plain_copy(model)
    sample = _probe(model, what)
    trailing = sample.shape[1:]
    if _data._is_dataframe(X):
        pieces = [da.from_delayed(dask.delayed(getattr(model, what))(b),
                                  shape=(math.nan, *trailing), dtype=sample.dtype)
                  for b in X.to_delayed()]
        return da.concatenate(pieces, axis=0, allow_unknown_chunksizes=True)
    if not _data._is_dask_array(X):
        raise TypeError(f"X must be a dask array or DataFrame, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    if model.feature_names is not None:  # warned once here, as the model would per call
        from mlpcore._results import FeatureNamesWarning

        warnings.warn(f"X has no feature names, but the model was trained with "
                      f"{len(model.feature_names)} named features; its columns are taken by "
                      "position. Pass a dask DataFrame to have them matched by name.",
                      FeatureNamesWarning, stacklevel=3)
    meta = np.empty((0, *trailing), dtype=sample.dtype)
    if trailing:
        return X.map_blocks(_quiet, model, what, dtype=sample.dtype, meta=meta,
                            chunks=(X.chunks[0], trailing))
    return X.map_blocks(_quiet, model, what, dtype=sample.dtype, meta=meta, drop_axis=1)


def _quiet(block, model, what):
    """``model.<what>(block)`` on a worker, its feature-name warning already given."""
    from mlpcore._results import FeatureNamesWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatureNamesWarning)
        return getattr(model, what)(block)


def predict(model, X):
    """Class labels or predicted values of ``model`` for a dask array or DataFrame X: a
    lazy dask array computed block by block on the workers (rows in X's partitions)."""
    return _lazy(model, X, "predict")


def predict_proba(model, X):
    """Class probabilities (N x n_classes) for X, a lazy dask array (classification)."""
    if model.targets.task != "classification":
        raise AttributeError("predict_proba is only available for classification models")
    return _lazy(model, X, "predict_proba")


def forward(model, X):
    """Output activations a_L for X, a lazy dask array."""
    return _lazy(model, X, "forward")


def _block_score_parts(model, xb, yb, swb):
    """Per partition: classification (weighted hits, weight); regression the sums behind
    R^2 (weight, sum w y, sum w y^2, sum w (y - p)^2 per output)."""
    _data.check_same_rows(len(xb), len(yb))
    X = model._inputs(xb)
    yv = yb.to_numpy() if hasattr(yb, "to_numpy") else np.asarray(yb)
    Ym = model._encode(yv, len(X))
    sw = _data._weights(swb, len(X), np.float64)
    A = model._forward(X)
    w = np.ones(len(X)) if sw is None else sw
    if model.targets.task == "classification":
        if len(X) == 0:
            return 0.0, 0.0
        return model.targets.score(A, Ym, sw) * w.sum(), w.sum()
    Yf, Pf = Ym.astype(np.float64), A.astype(np.float64)
    return (w.sum(), (w[:, None] * Yf).sum(0), (w[:, None] * Yf ** 2).sum(0),
            (w[:, None] * (Yf - Pf) ** 2).sum(0))


def score(model, X, Y, sample_weight=None, *, client=None):
    """Accuracy (classification) or R^2 averaged over outputs (regression) on dask data,
    from per-partition sums: accuracy = sum_p hits_p / sum_p W_p; R^2 per output from
    sum w, sum w y, sum w y^2 and sum w (y - p)^2.

    Returns
    -------
    float
    """
    model._require_built()
    model = _plain_copy(model)
    client, own = _client(client)
    try:
        blocks = _data.blocks(client, X, Y, sample_weight)
        parts = client.gather(client.compute(
            [dask.delayed(_block_score_parts)(model, x, y, w)
             for x, y, w in zip(blocks.x, blocks.y, blocks.sw)]))
    finally:
        if own:
            cluster = client.cluster
            client.close()
            cluster.close()
    if model.targets.task == "classification":
        total = sum(p[1] for p in parts)
        return float(sum(p[0] for p in parts) / total)
    W = sum(p[0] for p in parts)
    sy = np.sum([p[1] for p in parts], axis=0)
    syy = np.sum([p[2] for p in parts], axis=0)
    ss_res = np.sum([p[3] for p in parts], axis=0) / W
    ss_tot = syy / W - (sy / W) ** 2
    ss_tot = np.where(ss_tot > 1e-15 * np.maximum(syy / W, 1e-300), ss_tot, 0.0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                  np.where(ss_res > 0, 0.0, 1.0))
    return float(np.mean(r2))

