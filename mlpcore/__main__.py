"""``python -m mlpcore`` and the ``mlpcore`` console script: see :mod:`mlpcore._cli`."""
from mlpcore._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
