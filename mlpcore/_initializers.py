"""Initial parameters: Glorot-uniform draws, or the user's own arrays.

Both write into the flat parameter vector theta, whose layer views the model exposes as
``weights`` and ``biases``.
"""

import numpy as np


def glorot_uniform(network, theta, activation, rng):
    """Fill theta with Glorot-uniform draws, as scikit-learn's MLP does.

    For a layer with fan_in inputs and fan_out outputs, W and b are drawn from
    U(-r, r) with r = sqrt(f / (fan_in + fan_out)), f = 2 for sigmoid hidden units and 6
    otherwise (Glorot & Bengio, 2010). Draws are made in float64 and rounded to theta's
    dtype, so a float32 and a float64 model with the same seed start from the same point.

    Parameters
    ----------
    network : mlpcore._engine.Network
    theta : ndarray of shape (n_params,)
        Written in place.
    activation : str
        Hidden activation name.
    rng : numpy.random.Generator
    """
    factor = 2.0 if activation == "sigmoid" else 6.0
    sizes = network.sizes
    for (w, b), fan_in, fan_out in zip(network.layer_slices(), sizes[:-1], sizes[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        theta[w] = rng.uniform(-bound, bound, fan_in * fan_out)
        theta[b] = rng.uniform(-bound, bound, fan_out)


def _as_real_array(a, what):
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    return arr


def from_arrays(network, theta, init):
    """Copy ``init = (weights, biases)`` into theta after checking every shape.

    Parameters
    ----------
    network : mlpcore._engine.Network
    theta : ndarray of shape (n_params,)
        Written in place; the user's arrays are copied, never aliased.
    init : tuple (weights, biases)
        ``weights[l]`` of shape (sizes[l], sizes[l+1]) and ``biases[l]`` of shape
        (sizes[l+1],), for every layer.

    Raises
    ------
    TypeError, ValueError
        Wrong structure, dtype, shape, or non-finite values.
    """
    try:
        weights, biases = init
        weights, biases = list(weights), list(biases)
    except (TypeError, ValueError):
        raise TypeError("init must be a pair (weights, biases) of lists of arrays") from None
    n_layers = len(network.sizes) - 1
    if len(weights) != n_layers or len(biases) != n_layers:
        raise ValueError(
            f"init needs {n_layers} weight matrices and {n_layers} bias vectors, got "
            f"{len(weights)} and {len(biases)}"
        )
    for l, ((w, b), W, B) in enumerate(zip(network.layer_slices(), weights, biases)):
        W = _as_real_array(W, f"init weights[{l}]")
        B = _as_real_array(B, f"init biases[{l}]")
        shape = (network.sizes[l], network.sizes[l + 1])
        if W.shape != shape:
            raise ValueError(f"init weights[{l}] has shape {W.shape}, expected {shape}")
        if B.shape != (shape[1],):
            raise ValueError(f"init biases[{l}] has shape {B.shape}, expected ({shape[1]},)")
        if not (np.isfinite(W).all() and np.isfinite(B).all()):
            raise ValueError(f"init layer {l} contains NaN or infinity")
        theta[w] = W.ravel()
        theta[b] = B
