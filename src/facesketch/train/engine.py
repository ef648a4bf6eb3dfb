"""One training step of a paired (pix2pix, Pix2PixHD, HIDA) or unpaired (CycleGAN, attention
CycleGAN) variant, with everything it needs: networks, optimisers, losses, precision.

Steps return their losses as detached device tensors; nothing in a step waits for the GPU, the
loop reads the numbers only when it logs. The engine reads its settings from the resolved spec
without fallbacks (their defaults: docs/settings.md); the frozen networks some losses run (VGG,
HED + LPIPS, DSINE) come in from ``loss_networks``, so tests and benchmarks pass stand-ins the
same way the CLI passes the real ones.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facesketch.errors import ConfigError
from facesketch.models import registry
from facesketch.train import losses as L
from facesketch.train.data import Batch
from facesketch.train.schedule import make_optimizer, make_scheduler

log = logging.getLogger(__name__)


class WithAux(nn.Module):
    """Calls ``forward_all`` when a generator has one, so compiled graphs return its extras
    (HIDA's depth, the attention masks) instead of stashing them on the module."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x, depth=None, style=None):
        if hasattr(self.net, "forward_all"):
            return self.net.forward_all(x, depth, style)
        return self.net(x, depth, style), None


def set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class ImagePool:
    """CycleGAN's history of generated images (size 50): once full, each query returns, with
    probability 1/2 per image, an older image and stores the new one in its place. Randomness
    comes from the data generator, so a resumed run draws the same."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size, self.generator = size, generator
        self.images: torch.Tensor | None = None
        self.count = 0

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        if self.images is None:
            self.images = torch.zeros((self.size,) + tuple(images.shape[1:]), dtype=images.dtype,
                                      device=images.device)
        b = images.shape[0]
        if self.count + b <= self.size:
            self.images[self.count:self.count + b] = images
            self.count += b
            return images
        dev = images.device
        swap = torch.rand(b, generator=self.generator, device=dev) > 0.5
        idx = torch.randint(0, self.size, (b,), generator=self.generator, device=dev)
        old = self.images[idx]
        out = torch.where(swap[:, None, None, None], old, images)
        self.images.index_copy_(0, idx, torch.where(swap[:, None, None, None], images, old))
        return out

    def state(self) -> dict:
        return {"count": self.count, "images": self.images}

    def load(self, state: dict) -> None:
        self.count, self.images = int(state["count"]), state["images"]


class Precision:
    def __init__(self, kind: str, device: torch.device, cpu_bf16: bool = False):
        # cpu_bf16: the GPU recipe run on the CPU for testing (autocast to bf16 exists there; fp16 does not)
        if device.type != "cuda" and kind != "fp32" and not (cpu_bf16 and kind == "bf16"):
            log.info("precision %s asked for, but on the CPU training runs in fp32", kind)
            kind = "fp32"
        self.kind, self.device = kind, device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(kind)
        self.scaler = torch.amp.GradScaler("cuda") if kind == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)

    def end_step(self) -> None:
        if self.scaler is not None:
            self.scaler.update()


def loss_weights(losses: dict) -> dict[str, float]:
    """Every loss's weight; a loss the variant does not name is off (weight 0)."""
    def weight(key: str) -> float:
        value = losses.get(key, 0.0)
        return value["weight"] if isinstance(value, dict) else value

    return {"gan": weight("gan"), "l1": weight("l1"), "textural": weight("textural"),
            "geometric": weight("geometric"), "fm": weight("feature_matching"), "vgg": weight("vgg"),
            "cycle": weight("cycle"), "identity": weight("identity"), "edge": weight("edge"),
            "normal": weight("normal")}


def loss_networks(spec: dict, weights_dir: Path, device: torch.device) -> dict[str, nn.Module]:
    """The frozen networks a variant's losses run, from the weights folder (a missing file is an
    error naming it): vgg (Pix2PixHD), edge (HED + LPIPS), normal (DSINE)."""
    w, nets = loss_weights(spec["losses"]), {}
    if w["vgg"]:
        from facesketch.errors import WeightsError
        from facesketch.maps.weights import require
        from facesketch.torchio import safe_load

        path = require("vgg19", weights_dir)
        nets["vgg"] = L.VGGLoss(safe_load(path, WeightsError, "PyTorch state dict"))
    if w["edge"]:
        from facesketch.maps import hed
        from facesketch.metrics.networks import load_lpips

        nets["edge"] = L.EdgeLoss(hed.load(spec["losses"].get("edge_hed", "official"), weights_dir),
                                  load_lpips(weights_dir))
    if w["normal"]:
        from facesketch.maps import dsine

        nets["normal"] = L.NormalLoss(dsine.load(weights_dir))
    return {k: v.to(device) for k, v in nets.items()}


class Engine:
    """Builds the networks of a variant and runs its training steps.

    ``loss_networks``: the frozen networks of the losses it uses (``loss_networks()`` builds
    them); ``pool_generator``: the random generator of CycleGAN's image pool (the data's, so a
    resumed run draws the same); ``gpu_recipe_on_cpu``: the GPU recipe (bf16 autocast,
    channels_last, fused optimisers, compile) on the CPU, for tests.
    """

    compiled = False  # set by facesketch.train.compile when the networks run as compiled graphs

    def __init__(self, spec: dict, device: torch.device, loss_networks: dict[str, nn.Module] | None = None,
                 pool_generator: torch.Generator | None = None, fast_optimizers: bool = True,
                 gpu_recipe_on_cpu: bool = False):
        self.spec, self.device = spec, device
        # the GPU recipe (bf16 autocast, channels_last, fused optimisers, compile) also on the CPU, for tests
        self.recipe = device.type == "cuda" or gpu_recipe_on_cpu
        self.paired = spec["family"] == "paired"
        self.channels_last = self.recipe and spec["channels_last"]
        self.nets = registry.build(spec)
        for net in self.nets.values():
            if spec["init"] == "normal":  # "default": PyTorch's own, as released HIDA
                registry.init_weights(net)
            net.to(device)
        self.precision = Precision(spec["precision"], device, cpu_bf16=self.recipe)
        if self.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        losses = spec["losses"]
        gan = losses["gan"]
        self.gan = L.GANLoss(gan["type"], **{k: v for k, v in gan.items() if k == "d_extra"})
        # paper Eq. 8 shows D the fake pair with the reconstructed depth; the released code the input depth
        self.fake_depth = gan.get("fake_depth", "input")
        self.weights = loss_weights(losses)
        self.textural_mode = losses["textural"]["mode"] if self.weights["textural"] else None
        self.geometric_mode = losses["geometric"]["mode"] if self.weights["geometric"] else None
        self.loss_nets: dict[str, nn.Module] = dict(loss_networks or {})
        self.pool_generator = pool_generator
        self._check_losses()
        opt = spec["optimizer"]
        if self.paired:
            g_params, d_params = self.nets["G"].parameters(), self.nets["D"].parameters()
        else:
            g_params = list(self.nets["G_A"].parameters()) + list(self.nets["G_B"].parameters())
            d_params = list(self.nets["D_A"].parameters()) + list(self.nets["D_B"].parameters())
        self.opt_g = make_optimizer(g_params, opt, opt["lr_g"], device, fast_optimizers, fused_on_cpu=self.recipe)
        self.opt_d = make_optimizer(d_params, opt, opt["lr_d"], device, fast_optimizers, fused_on_cpu=self.recipe)
        self.sched = [make_scheduler(self.opt_g, spec["schedule"]), make_scheduler(self.opt_d, spec["schedule"])]
        # what the steps call: generators wrapped to return their extras, compiled by compile()
        self.step_nets = {name: (WithAux(net) if name.startswith("G") else net) for name, net in self.nets.items()}
        self.pools: dict[str, ImagePool] = {}

    # --- set-up ------------------------------------------------------------------------------

    def _check_losses(self) -> None:
        name, w = self.spec.get("name", "?"), self.weights
        if self.paired and (w["cycle"] or w["identity"] or w["edge"] or w["normal"]):
            raise ConfigError(f"variants.{name}.losses: cycle, identity, edge and normal are unpaired losses")
        if not self.paired and (w["l1"] or w["textural"] or w["geometric"] or w["fm"]):
            raise ConfigError(f"variants.{name}.losses: l1, textural, geometric and feature_matching need pairs")
        missing = {k for k in ("vgg", "edge", "normal") if self.weights[k]} - set(self.loss_nets)
        if missing:
            raise ConfigError(f"variants.{name}.losses: no network given for {', '.join(sorted(missing))}")
        if self.weights["geometric"] and not getattr(self.nets.get("G"), "depth_head", None):
            raise ConfigError(f"variants.{name}: the geometric loss needs a HIDA generator with depth_head")
        if self.paired and self.fake_depth == "reconstructed" and not getattr(self.nets["G"], "depth_head", None):
            raise ConfigError(f"variants.{name}.losses.gan.fake_depth: reconstructed needs a HIDA depth_head")
        if self.weights["identity"] and registry.sketch_channels(self.spec) != 3:
            raise ConfigError(f"variants.{name}: the identity loss needs 3-channel sketches (out_channels: 3)")

    def compile(self, enabled: bool, cuda_graphs: bool = False) -> None:
        from facesketch.train.compile import compile_engine

        compile_engine(self, enabled, cuda_graphs)

    def warm_up(self, batch: Batch, batch_b: Batch | None) -> None:
        from facesketch.train.compile import warm_up

        warm_up(self, batch, batch_b)

    # --- steps -------------------------------------------------------------------------------

    def _d_input(self, b: Batch, sketch: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        parts = []
        for name in registry.discriminator_inputs(self.spec):
            if name == "photo":
                parts.append(b.photo)
            elif name == "depth":
                parts.append(b.depth if depth is None else depth.to(sketch.dtype))
            else:
                parts.append(sketch)
        return torch.cat(parts, 1)

    def _memory_format(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """x in the networks' memory format (channels_last on CUDA when asked)."""
        if x is not None and self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def step(self, b: Batch, b2: Batch | None = None) -> dict[str, torch.Tensor]:
        return self._paired(b) if self.paired else self._unpaired(b, b2)

    def _paired(self, b: Batch) -> dict[str, torch.Tensor]:
        G, D, P, w = self.step_nets["G"], self.step_nets["D"], self.precision, self.weights
        photo, depth = self._memory_format(b.photo), self._memory_format(b.depth)
        with P.autocast():
            fake, depth_pred = G(photo, depth, b.style)
        fake_depth = depth_pred if self.fake_depth == "reconstructed" else None
        # discriminator
        set_requires_grad([self.nets["D"]], True)
        with P.autocast():
            real_in = self._d_input(b, b.sketch)
            fake_depth_d = None if fake_depth is None else fake_depth.detach()
            loss_d = self.gan.d_loss(D(real_in), D(self._d_input(b, fake.detach(), fake_depth_d)))
        P.backward_step(loss_d, self.opt_d)
        # generator
        set_requires_grad([self.nets["D"]], False)
        out = {}
        with P.autocast():
            fake_out = D(self._d_input(b, fake, fake_depth))
            out["G_gan"] = w["gan"] * self.gan.g_loss(fake_out)
            fake32 = fake.float()
            if w["l1"]:
                out["G_l1"] = w["l1"] * F.l1_loss(fake32, b.sketch)
            if w["textural"]:
                ref = b.sketch if self.textural_mode == "sobel_target" else b.photo
                out["G_textural"] = w["textural"] * L.textural_loss(fake32, ref,
                                                                    **L.textural_mode_args(self.textural_mode))
            if w["geometric"]:
                out["G_geometric"] = w["geometric"] * L.geometric_loss(depth_pred, b.depth, self.geometric_mode)
            if w["fm"]:
                with torch.no_grad():
                    real_out = D(real_in)
                out["G_fm"] = w["fm"] * L.feature_matching(real_out, fake_out)
            if w["vgg"]:
                out["G_vgg"] = w["vgg"] * self.loss_nets["vgg"](fake32, b.sketch)
        loss_g = sum(out.values())
        P.backward_step(loss_g, self.opt_g)
        P.end_step()
        out["D"] = loss_d
        return {k: v.detach() for k, v in out.items()}

    def _sketch_channels(self, sketch: torch.Tensor) -> torch.Tensor:
        return sketch.expand(-1, 3, -1, -1) if registry.sketch_channels(self.spec) == 3 else sketch

    def _unpaired(self, a: Batch, b: Batch) -> dict[str, torch.Tensor]:
        G_A, G_B, D_A, D_B = (self.step_nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
        P, w = self.precision, self.weights
        real_a, real_b = self._memory_format(a.photo), self._memory_format(self._sketch_channels(b.sketch))
        set_requires_grad([self.nets["D_A"], self.nets["D_B"]], False)
        out = {}
        with P.autocast():
            fake_b, _ = G_A(real_a)
            rec_a, _ = G_B(fake_b)
            fake_a, _ = G_B(real_b)
            rec_b, _ = G_A(fake_a)
            out["G_gan"] = w["gan"] * (self.gan.g_loss(D_B(fake_b)) + self.gan.g_loss(D_A(fake_a)))
            if w["cycle"]:
                out["G_cycle"] = w["cycle"] * (F.l1_loss(rec_a.float(), real_a) + F.l1_loss(rec_b.float(), real_b))
            if w["identity"]:
                idt_a, _ = G_A(real_b)
                idt_b, _ = G_B(real_a)
                out["G_identity"] = w["identity"] * w["cycle"] * (
                    F.l1_loss(idt_a.float(), real_b) + F.l1_loss(idt_b.float(), real_a))
            if w["edge"]:
                out["G_edge"] = w["edge"] * self.loss_nets["edge"](real_a, rec_a.float())
            if w["normal"]:
                out["G_normal"] = w["normal"] * self.loss_nets["normal"](real_a, rec_a.float())
        P.backward_step(sum(out.values()), self.opt_g)
        set_requires_grad([self.nets["D_A"], self.nets["D_B"]], True)
        pool_a = self.pools.setdefault("A", ImagePool(self.spec["image_pool"], self.pool_generator))
        pool_b = self.pools.setdefault("B", ImagePool(self.spec["image_pool"], self.pool_generator))
        with P.autocast():
            loss_d = (self.gan.d_loss(D_A(real_a), D_A(pool_a.query(fake_a)))
                      + self.gan.d_loss(D_B(real_b), D_B(pool_b.query(fake_b))))
        P.backward_step(loss_d, self.opt_d)
        P.end_step()
        out["D"] = loss_d
        return {k: v.detach() for k, v in out.items()}

    # --- state -------------------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sched": [s.state_dict() for s in self.sched],
            "scaler": self.precision.scaler.state_dict() if self.precision.scaler else {},
            "pools": {k: p.state() for k, p in self.pools.items()},
        }

    def load_state(self, state: dict) -> None:
        for k, v in self.nets.items():
            v.load_state_dict(state["nets"][k])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for s, st in zip(self.sched, state["sched"]):
            s.load_state_dict(st)
        if self.precision.scaler and state.get("scaler"):
            self.precision.scaler.load_state_dict(state["scaler"])
        for k, st in state.get("pools", {}).items():
            pool = self.pools.setdefault(k, ImagePool(self.spec["image_pool"], self.pool_generator))
            pool.load(st)

    def generators(self) -> dict[str, nn.Module]:
        return {k: v for k, v in self.nets.items() if k.startswith("G")}

