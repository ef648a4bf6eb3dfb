"""Train and run CoCosNet (and CoCosNet + HIDA) on the MetFaces manifest. Reads top to bottom.

Data as the reference's Pix2pixDataset serves it: each training painting comes with its edge map
(and depth map for the HIDA variant) and an exemplar: with probability ``reference.real`` (0.7) a
retrieved one (the hardest of its list with probability ``reference.hard``, 0.2, else the best),
otherwise the painting itself (a self-reference, the only samples the VGG feature-matching loss
counts). Each image and its maps are resized to ``load`` and randomly cropped to ``size`` and
flipped; the exemplar gets its own crop. Tests use the best exemplar and no augmentation.
Optimisers as the reference with TTUR: Adam betas (0, 0.9), G (correspondence + translation)
lr/2 with eps 1e-3, D 2 lr; constant for ``schedule.epochs``, then linear decay over
``schedule.decay_epochs``; the generator step, then the discriminator step.

The run folder holds ``last.pt`` after every epoch (networks, optimisers, every random state): a
killed run resumes there and ends with the weights of an unbroken one; ``model.pt`` at the end.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from facesketch.data.fs2k import load_manifest
from facesketch.device import pick
from facesketch.errors import ConfigError, DataError
from facesketch.exemplar import cocosnet
from facesketch.exemplar.losses import generator_losses, hinge_d
from facesketch.fileio import atomic_path, read_array, save_image, write_text
from facesketch.maps import encoding
from facesketch.progress import progress
from facesketch.runlock import run_lock
from facesketch.train import checkpoint as ckpt

log = logging.getLogger(__name__)


class MetFacesImages:
    """Every painting of the manifest with its edge (and depth) map, in memory as [-1, 1] tensors."""

    def __init__(self, manifest: pd.DataFrame, maps: Path | None, depth: bool, size: int):
        root = Path(manifest.attrs["root"])
        self.rows = {r.id: r for r in manifest.itertuples()}
        self.image, self.seg = {}, {}
        for r in manifest.itertuples():
            img = torch.from_numpy(np.array(read_array(root / r.photo, "RGB"))).permute(2, 0, 1).float() / 127.5 - 1
            edge = torch.from_numpy(np.array(read_array(root / r.edge, "L"))).float()[None] / 255.0
            parts = [edge]
            if depth:
                path = encoding.map_path(Path(maps), "depth", r.split, r.id)
                if not path.is_file():
                    raise DataError(f"{path}: depth map missing (run `facesketch maps depth` on the MetFaces manifest)")
                d = torch.from_numpy(np.array(encoding.load_depth(path))).float()[None]
                parts.append(F.interpolate(d[None], size=img.shape[1:], mode="bilinear")[0])
            if img.shape[1] != size:
                raise DataError(f"{root / r.photo}: {img.shape[1]} pixels, the variant trains at {size} "
                                "(prepare MetFaces at the variant's size)")
            self.image[r.id], self.seg[r.id] = img, torch.cat(parts)

    def item(self, image_id: str, load: int, size: int, rng: random.Random | None):
        """(image, semantics) resized to ``load``, randomly cropped to ``size`` and flipped (rng given)."""
        img, seg = self.image[image_id], self.seg[image_id]
        if rng is None:
            return img, seg
        if load != size:
            img = F.interpolate(img[None], size=(load, load), mode="bicubic", align_corners=False)[0].clamp(-1, 1)
            seg = F.interpolate(seg[None], size=(load, load), mode="nearest")[0]
            x, y = rng.randint(0, load - size), rng.randint(0, load - size)
            img, seg = img[:, y:y + size, x:x + size], seg[:, y:y + size, x:x + size]
        if rng.random() < 0.5:
            img, seg = img.flip(-1), seg.flip(-1)
        return img, seg


def exemplars(row) -> list[str]:
    return [e for e in str(row.exemplars).split(",") if e]


def training_batch(data: MetFacesImages, ids: list[str], spec: dict, rng: random.Random, device):
    size, load = int(spec["size"]), int(spec.get("load") or spec["size"])
    ref_p = spec["reference"]
    out = {k: [] for k in ("real", "seg", "ref", "ref_seg", "self_ref")}
    for i in ids:
        real, seg = data.item(i, load, size, rng)
        p = rng.random()
        refs = exemplars(data.rows[i])
        if p < ref_p["real"] and refs:
            ref_id, self_ref = (refs[-1] if p < ref_p["hard"] else refs[0]), 0.0
        else:
            ref_id, self_ref = i, 1.0
        ref, ref_seg = data.item(ref_id, load, size, rng)
        for k, v in (("real", real), ("seg", seg), ("ref", ref), ("ref_seg", ref_seg)):
            out[k].append(v)
        out["self_ref"].append(torch.tensor(self_ref))
    return {k: torch.stack(v).to(device) for k, v in out.items()}


def lr_factor(epoch: int, schedule: dict) -> float:
    """The reference's linear decay: epoch (0-based) trains at 1 until ``epochs``, then falls to 0."""
    decay = int(schedule.get("decay_epochs", 0))
    return 1.0 if decay == 0 else max(0.0, 1.0 - max(0, epoch - int(schedule["epochs"])) / decay)


def train(spec: dict, manifest_path: Path, maps: Path | None, out: Path, seed: int = 0,
          weights_dir: Path = Path("weights"), device: str = "auto", vgg=None) -> Path:
    """Train one MetFaces variant; writes ``out/model.pt`` (the generator side and the spec) and losses.csv.

    ``vgg``: the loss network; None loads CoCosNet's VGG19 from the weights folder."""
    with run_lock(Path(out), "MetFaces run folder"):
        return _train(spec, manifest_path, maps, Path(out), seed, weights_dir, device, vgg)


def _train(spec: dict, manifest_path: Path, maps: Path | None, out: Path, seed: int, weights_dir: Path,
           device: str, vgg) -> Path:
    from facesketch.exemplar import vgg as vgg_mod

    load = spec.get("load") or spec["size"]
    if load < spec["size"]:
        raise ConfigError(f"{spec.get('name', 'variant')}.load: {load} is smaller than the training size "
                          f"{spec['size']} (load is the resize before the random crop)")
    dev = pick(device)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    manifest = load_manifest(manifest_path)
    train_ids = sorted(manifest[manifest.split == "train"].id)
    if not train_ids:
        raise DataError(f"{manifest_path}: no training images")
    data = MetFacesImages(manifest, maps, bool(spec.get("depth_input")), int(spec["size"]))
    vgg = (vgg or vgg_mod.load("cocosnet_vgg19", weights_dir)).to(dev)
    net, disc = cocosnet.build(spec)
    net.to(dev).train()
    disc.to(dev).train()
    opt = spec["optimizer"]
    betas = tuple(opt["betas"])
    opt_g = torch.optim.Adam(net.parameters(), lr=opt["lr"] / 2, betas=betas, eps=opt.get("eps_g", 1.0e-3))
    opt_d = torch.optim.Adam(disc.parameters(), lr=opt["lr"] * 2, betas=betas)
    w, sched, bs = spec["losses"], spec["schedule"], int(spec["batch_size"])
    n_epochs = int(sched["epochs"]) + int(sched.get("decay_epochs", 0))
    steps = max(1, len(train_ids) // bs)  # the reference's loader drops the last partial batch
    if spec.get("max_steps_per_epoch"):
        steps = min(steps, int(spec["max_steps_per_epoch"]))
    # resume: last.pt holds everything an unbroken run has in memory at an epoch boundary
    last, digest = out / "last.pt", ckpt.spec_hash(spec)
    start, records = 0, []
    state = ckpt.load_resume(last, map_location=dev)
    if state is not None and state.get("spec_hash") == digest:
        net.load_state_dict(state["net"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        ckpt.set_rng_state({k: v.cpu() for k, v in state["rng"].items()}, dev)
        rng.setstate(state["py_rng"])
        start, records = int(state["epoch"]), list(state["history"])
        log.info("%s: resuming after epoch %d of %d from %s", spec.get("name", "cocosnet"), start, n_epochs, last)
    elif state is not None:
        stale = ckpt.set_aside_stale(last)
        log.warning("%s belongs to another spec; kept as %s, training from scratch", last, stale)
    for epoch in range(start, n_epochs):
        f = lr_factor(epoch, sched)
        for group in opt_g.param_groups:
            group["lr"] = opt["lr"] / 2 * f
        for group in opt_d.param_groups:
            group["lr"] = opt["lr"] * 2 * f
        order = train_ids[:]
        rng.shuffle(order)
        sums: dict[str, float] = {}
        start = time.time()
        for step in progress(range(steps), desc=f"{spec.get('name', 'cocosnet')} epoch {epoch + 1}/{n_epochs}",
                             unit="step"):
            b = training_batch(data, order[step * bs:(step + 1) * bs] or order[:bs], spec, rng, dev)
            fake, co = net(b["seg"], b["ref"], b["ref_seg"], b["real"])
            for p in disc.parameters():
                p.requires_grad_(False)
            d_fake = disc(torch.cat((b["seg"], fake), 1))
            d_real = disc(torch.cat((b["seg"], b["real"]), 1))
            terms = generator_losses(w, fake, b["real"], b["ref"], b["self_ref"], co, d_fake, d_real, vgg,
                                     spec.get("perceptual_layer", "r42"))
            opt_g.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            opt_g.step()
            for p in disc.parameters():
                p.requires_grad_(True)
            fake_d = fake.detach()
            terms["D_fake"] = hinge_d(disc(torch.cat((b["seg"], fake_d), 1)), real=False) * w["gan"]
            terms["D_real"] = hinge_d(disc(torch.cat((b["seg"], b["real"]), 1)), real=True) * w["gan"]
            opt_d.zero_grad(set_to_none=True)
            (terms["D_fake"] + terms["D_real"]).backward()
            opt_d.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        records.append({"epoch": epoch + 1, **{k: v / steps for k, v in sums.items()},
                        "seconds": time.time() - start, "lr_factor": f})
        write_text(out / "losses.csv", pd.DataFrame(records).to_csv(index=False))
        ckpt.save(last, {"epoch": epoch + 1, "history": records, "spec_hash": digest, "net": net.state_dict(),
                         "disc": disc.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                         "rng": ckpt.rng_state(dev), "py_rng": rng.getstate()}, keep_previous=True)
        ckpt.kill_hook("FACESKETCH_KILL_AFTER_EPOCHS", epoch + 1)  # after the epoch's checkpoint
    model = out / "model.pt"
    with atomic_path(model) as tmp:
        torch.save({"spec": spec, "net": net.state_dict(), "seed": seed}, tmp)
    return model


def load_model(path: Path, device) -> tuple[dict, cocosnet.CoCosNet]:
    from facesketch.torchio import safe_load

    state = safe_load(Path(path), DataError, "CoCosNet checkpoint", map_location="cpu")
    net, _ = cocosnet.build(state["spec"])
    net.load_state_dict(state["net"])
    return state["spec"], net.to(device).eval()


@torch.no_grad()
def infer(checkpoint: Path, manifest_path: Path, maps: Path | None, out: Path, device: str = "auto",
          batch_size: int = 8) -> int:
    """Paint every test edge map in its best exemplar's style: ``out/<id>.png`` (RGB, the training size)."""
    dev = pick(device)
    spec, net = load_model(checkpoint, dev)
    manifest = load_manifest(manifest_path)
    test = manifest[manifest.split == "test"]
    data = MetFacesImages(manifest, maps, bool(spec.get("depth_input")), int(spec["size"]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = sorted(test.id)
    for start in progress(range(0, len(ids), batch_size), desc="paint", unit="batch"):
        chunk = ids[start:start + batch_size]
        refs = [exemplars(data.rows[i])[0] for i in chunk]
        seg = torch.stack([data.seg[i] for i in chunk]).to(dev)
        ref = torch.stack([data.image[r] for r in refs]).to(dev)
        ref_seg = torch.stack([data.seg[r] for r in refs]).to(dev)
        fake, _ = net(seg, ref, ref_seg)
        for i, y in zip(chunk, fake):
            save_image(out / f"{i}.png", to_uint8(y))
    return len(ids)


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
