"""The result files that go into scoring, checked and accounted for.

Nothing is scored silently wrong and nothing is left out silently:

* bit depth: 16-bit grey results are brought to 8 bits as MATLAB's ``im2uint8`` does
  (round(x / 257)); 32-bit integer and floating-point images have no defined range and are
  refused by name (their values are NaN with the reason);
* framing: a result whose aspect ratio differs from the protocol's framing (square for the
  aligned crop, the archive photo's for released results) would be stretched, and one whose
  size differs from the aligned ground truth would be resized: both are named warnings, or an
  error with ``metrics.framing_mismatch: error``;
* missing results (a test id without a file) and ignored files (a file that is no test id of
  the scored style) are named in the log and listed, with the above, in ``<metrics>.issues.parquet``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facesketch.errors import DataError
from facesketch.fileio import read_array, write_parquet

log = logging.getLogger(__name__)

ISSUE_COLUMNS = ["variant", "seed", "style", "image_id", "file", "issue", "detail"]
SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
EIGHT_BIT = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa"}
ASPECT_TOLERANCE = 0.02  # relative: rounding of odd sizes stays inside it
SHOWN = 10  # names per kind in the log; the Parquet has them all


def read_result_grey(path: Path) -> np.ndarray:
    """A result image as grey uint8 under the protocol (MATLAB rgb2gray), converted or refused by bit depth."""
    from facesketch.metrics.protocol import rgb2gray

    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in SIXTEEN_BIT:
                im.load()
                return np.clip(np.round(np.asarray(im).astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from e
    if mode not in EIGHT_BIT:
        raise DataError(f"{path}: image mode {mode} (32-bit integer or floating point) has no defined 0..255 "
                        "range; save results as 8- or 16-bit PNG")
    return rgb2gray(read_array(path, "RGB"))


def framing_issues(jobs, context) -> list[dict]:
    """Size, aspect and bit-depth findings for the jobs' result files (headers only: fast).

    ``context(key)`` gives (variant, seed, style, image_id) of a job.
    """
    issues, gt_sizes = [], {}
    for job in jobs:
        if job.result is None:
            continue
        try:
            with Image.open(job.result) as im:
                (w, h), mode = im.size, im.mode
        except (OSError, SyntaxError, ValueError):
            continue  # unreadable: the metrics' rows give the reason
        row = dict(zip(("variant", "seed", "style", "image_id"), context(job.key)), file=job.result)
        if mode in SIXTEEN_BIT:
            issues.append({**row, "issue": "converted", "detail": f"16-bit ({mode}) brought to 8 bits as im2uint8"})
        elif mode not in EIGHT_BIT:
            issues.append({**row, "issue": "refused", "detail": f"image mode {mode}: no defined 0..255 range"})
        want = 1.0 if job.result_framing == "aligned" else job.orig_width / job.orig_height
        if abs((w / h) / want - 1) > ASPECT_TOLERANCE:
            issues.append({**row, "issue": "aspect", "detail": (
                f"{w}x{h} (aspect {w / h:.3f}) but the {job.result_framing} framing has aspect {want:.3f}: "
                "scoring would stretch it")})
        elif job.result_framing == "aligned" and job.gt_framing == "aligned":
            if job.gt_aligned not in gt_sizes:
                try:
                    with Image.open(job.gt_aligned) as g:
                        gt_sizes[job.gt_aligned] = g.size
                except (OSError, SyntaxError, ValueError):
                    gt_sizes[job.gt_aligned] = None
            gt = gt_sizes[job.gt_aligned]
            if gt is not None and (w, h) != gt:
                issues.append({**row, "issue": "size", "detail": (
                    f"{w}x{h} but the aligned ground truth is {gt[0]}x{gt[1]}: scoring would resize it")})
    return issues


def enforce(issues: list[dict], mode: str) -> None:
    """``metrics.framing_mismatch``: warn (scored, named) or error (nothing scored)."""
    bad = [i for i in issues if i["issue"] in ("aspect", "size")]
    if bad and mode == "error":
        names = ", ".join(f"{i['file']} ({i['detail']})" for i in bad[:SHOWN])
        more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise DataError(f"{len(bad)} result(s) do not match the protocol's framing: {names}{more} "
                        "(metrics.framing_mismatch: error; set it to warn to score them anyway)")


def report(issues: list[dict], out: Path) -> Path:
    """Log every kind of issue with the files named, and list them all beside the metrics."""
    path = issues_path(out)
    df = pd.DataFrame(issues, columns=ISSUE_COLUMNS)
    for kind, part in df.groupby("issue", sort=False):
        names = [Path(f).name if f else i for f, i in zip(part.file, part.image_id)]
        shown = ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
        level = logging.INFO if kind == "converted" else logging.WARNING
        log.log(level, "%d %s: %s (%s; all in %s)", len(part), _TITLES.get(kind, kind), shown, part.detail.iloc[0],
                path)
    write_parquet(path, df)
    return path


_TITLES = {"missing": "test images have no result", "ignored": "files ignored",
           "aspect": "results with the wrong aspect ratio", "size": "results of another size",
           "converted": "16-bit results converted", "refused": "results refused"}


def issues_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".issues.parquet")
