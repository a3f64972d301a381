"""``mlpcore export``: a saved model as an ONNX graph, to serve where Python does not run."""

import textwrap

from mlpcore._cli._arguments import Formatter, paragraphs, positive_int
from mlpcore._cli._errors import EXIT_USAGE, CLIError, cannot_write
from mlpcore._cli._files import load_model
from mlpcore._cli._output import out


def add_parser(subparsers):
    """Add the ``export`` command to the ``mlpcore`` subparsers."""
    p = subparsers.add_parser(
        "export", formatter_class=Formatter, help="write a model as an ONNX graph",
        description=paragraphs("""\
            Write a saved model as an ONNX graph (needs pip install 'mlpcore[onnx]'), to
            run under onnxruntime or any ONNX runtime (C++, C#, Java, the browser, phones).
            The graph takes X, shape [N, features], and gives what 'mlpcore predict' gives:
            for classification 'label' and 'probabilities', for regression 'predictions'.
            Scaling that 'mlpcore train' folded into the model is part of the graph, so it
            takes raw features."""),
        epilog=textwrap.dedent("""\
            examples:
              mlpcore export iris.npz iris.onnx
              mlpcore export model.npz model.onnx --dtype float64 --opset 13

            serving it in Python:
              import onnxruntime as ort
              session = ort.InferenceSession("iris.onnx")
              label, proba = session.run(None, {"X": X.astype("float32")})"""))
    p.add_argument("model", metavar="MODEL", help="a model file written by mlpcore")
    p.add_argument("onnx", metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="the graph's input and weight type (default float32)")
    p.add_argument("--opset", type=positive_int, default=None, metavar="N",
                   help="ONNX operator set, 13 or newer (default 17)")
    p.set_defaults(func=run)


def run(args):
    """``mlpcore export``: load the model, build its graph, write it."""
    model = load_model(args.model)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise CLIError("export needs the onnx package: pip install 'mlpcore[onnx]'") from None
    try:
        # Written beside OUT.onnx, then renamed over it: no half-written file on failure.
        proto = model.to_onnx(args.onnx, dtype=args.dtype, opset=args.opset)
    except OSError as exc:
        raise cannot_write(args.onnx, exc, "the graph") from None
    except ValueError as exc:  # an opset the installed onnx does not know
        raise CLIError(str(exc), EXIT_USAGE) from None
    outputs = ", ".join(o.name for o in proto.graph.output)
    out(f"model: {args.model} (network {'-'.join(map(str, model.sizes))})")
    out(f"ONNX graph written to {args.onnx}: input X [N, {model.n_features}] {args.dtype}, "
        f"outputs {outputs}, opset {proto.opset_import[0].version}")
    return 0
