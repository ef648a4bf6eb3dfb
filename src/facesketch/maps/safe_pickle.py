"""Loading the 3DDFA_V2 pickles without letting them run code.

The files are dicts of numpy arrays. Unpickling may call any importable function, so only
the handful of numpy constructors that arrays need are allowed; anything else is refused with
the file's name. Files are also checksum-verified (facesketch.maps.weights) before loading.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from facesketch.errors import WeightsError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load(path: Path):
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise WeightsError(f"{path}: not a readable numpy pickle ({e}); truncated or not the official file") from e
