"""``torch.load`` with ``weights_only=True`` and messages that say what a refusal means.

PyTorch's own text for a refused pickle suggests ``weights_only=False``; for a file that holds
code-carrying Python objects that is exactly the wrong advice, so it is replaced.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from facesketch.errors import FacesketchError


def _refused_global(message: str) -> str | None:
    """The Python object a weights-only load refused, when that is why it failed."""
    if "Weights only load failed" not in message:
        return None
    m = re.search(r"unsupported GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", message)
    return (m.group(1) or m.group(2)) if m else "a Python object other than tensors and plain containers"


def safe_load(path: Path, error: type[FacesketchError], what: str, map_location="cpu"):
    """Load ``path`` without running code; any failure is ``error`` naming the file."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as e:
        raise error(f"{path}: {what} not found") from e
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        refused = _refused_global(str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if refused is not None:
            raise error(f"{path} is not a safe {what}: it holds {refused}, which would run code when loaded; "
                        "do not load it (delete it, or replace it with a file from the official source)") from None
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise error(f"{path}: cannot load as a {what} ({detail}); truncated or not the right file") from e
