"""Helpers shared by several test files: small data sets, parameter comparisons, and the
hypothesis strategy that draws random problems and fit settings."""

import io
import warnings
import zipfile

import numpy as np
from hypothesis import strategies as st

import mlpcore

HIDDEN = ["sigmoid", "tanh", "relu", "identity"]


def classification_data(rng, n=120, d=4, k=3):
    """(X, y): n samples of d features, k noisy classes read off the first k features."""
    X = rng.normal(size=(n, d))
    y = np.argmax(X[:, :k] + 0.5 * rng.normal(size=(n, k)), axis=1)
    return X, y


def params(model):
    """The model's parameter arrays, weights then biases (views, not copies)."""
    return model.weights + model.biases


def same_weights(a, b):
    """Whether two models hold bit-identical parameters."""
    return all(np.array_equal(x, y) for x, y in zip(params(a), params(b)))


def quiet_fit(X, Y, **settings):
    """mlpcore.fit with divergence warnings silenced (random settings may diverge)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mlpcore.TrainingDivergedWarning)
        return mlpcore.fit(X, Y, **settings)


@st.composite
def problems(draw, max_scale=1.0):
    """(X as float64, Y, fit settings, task): a small random problem and random options."""
    n = draw(st.integers(2, 40))
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, max_scale]))
    X = rng.normal(size=(n, d)) * scale
    task = draw(st.sampled_from(["labels", "one-hot", "regression", "multi-output"]))
    k = draw(st.integers(2, 4))
    labels = np.arange(n) % k  # every class present
    rng.shuffle(labels)
    Y = {"labels": labels, "one-hot": np.eye(k)[labels],
         "regression": X.sum(axis=1), "multi-output": np.column_stack([X[:, 0], -X[:, -1]])}[task]
    settings = dict(
        hidden=tuple(draw(st.lists(st.integers(1, 6), max_size=2))),
        activation=draw(st.sampled_from(HIDDEN)),
        optimizer=draw(st.sampled_from(["sgd", "momentum", "nesterov", "adam"])),
        batch_size=draw(st.one_of(st.none(), st.just("auto"), st.integers(1, n))),
        epochs=draw(st.integers(1, 3)),
        shuffle=draw(st.booleans()),
        alpha=draw(st.sampled_from([0.0, 1e-3])),
        seed=seed % 1000,
    )
    if task == "labels" and draw(st.booleans()):
        settings["output"] = "sigmoid"
    return X, Y, settings, task


def make_problem(rng, n=7, d=4, hidden=(5, 3), k=3, output="softmax"):
    """(X, Y, Ws, bs): a small problem whose targets suit ``output`` and random parameters."""
    X = rng.normal(size=(n, d))
    if output == "softmax":
        Y = np.eye(k)[rng.integers(0, k, n)]
    elif output == "sigmoid":
        Y = (rng.random((n, k)) < 0.5).astype(float)
    elif output == "exp":
        Y = rng.poisson(1.5, size=(n, k)).astype(float)  # counts, zeros among them
    else:
        Y = rng.normal(size=(n, k))
    sizes = (d, *hidden, k)
    Ws = [rng.normal(scale=0.7, size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(scale=0.3, size=b) for b in sizes[1:]]
    return X, Y, Ws, bs


def flat(Ws, bs):
    """Weights and biases as one vector in the engine's layout: W_1 row-major, b_1, W_2, ..."""
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in zip(Ws, bs)])


def members_of(raw):
    """The members of a zip archive's bytes: {name: bytes}."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def archive(members):
    """A zip archive (stored, as numpy.savez writes) of {name: bytes}, as bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def onnx_session(proto):
    """An onnxruntime session for an ONNX ``ModelProto``, on one CPU thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
