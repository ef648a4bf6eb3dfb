"""One training step of a paired (pix2pix, Pix2PixHD, HIDA) or unpaired (CycleGAN, attention
CycleGAN) variant, with everything it needs: networks, optimisers, losses, precision.

Steps return their losses as detached device tensors; nothing in a step waits for the GPU, the
loop reads the numbers only when it logs.
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


class Engine:
    """Builds the networks of a variant and runs its training steps."""

    compiled = False  # set by facesketch.train.compile when the networks run as compiled graphs

    def __init__(self, spec: dict, device: torch.device, weights_dir: Path, fast_optimizers: bool = True,
                 gpu_recipe_on_cpu: bool = False):
        self.spec, self.device = spec, device
        # the GPU recipe (bf16 autocast, channels_last, fused optimisers, compile) also on the CPU, for tests
        self.recipe = device.type == "cuda" or gpu_recipe_on_cpu
        self.paired = spec["family"] == "paired"
        self.nets = registry.build(spec)
        for net in self.nets.values():
            if spec.get("init", "normal") == "normal":  # "default": PyTorch's own, as released HIDA
                registry.init_weights(net)
            net.to(device)
        self.precision = Precision(spec.get("precision", "fp32"), device, cpu_bf16=self.recipe)
        if self.recipe and spec.get("channels_last", False):
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        losses = spec["losses"]
        gan = losses.get("gan", {})
        self.gan = L.GANLoss(gan.get("type", "vanilla"), gan.get("d_extra", False))
        # paper Eq. 8 shows D the fake pair with the reconstructed depth; the released code the input depth
        self.fake_depth = gan.get("fake_depth", "input")
        self.w = {
            "gan": gan.get("weight", 1.0), "l1": losses.get("l1", 0.0),
            "textural": losses.get("textural", {}).get("weight", 0.0),
            "geometric": losses.get("geometric", {}).get("weight", 0.0),
            "fm": losses.get("feature_matching", 0.0), "vgg": losses.get("vgg", 0.0),
            "cycle": losses.get("cycle", 0.0), "identity": losses.get("identity", 0.0),
            "edge": losses.get("edge", 0.0), "normal": losses.get("normal", 0.0),
        }
        self.textural_mode = losses.get("textural", {}).get("mode", "sobel_target")
        self.geometric_mode = losses.get("geometric", {}).get("mode", "mse")
        self.extra: dict[str, nn.Module] = {}
        self._load_loss_networks(weights_dir)
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
        self.run = {name: (WithAux(net) if name.startswith("G") else net) for name, net in self.nets.items()}
        self.pools: dict[str, ImagePool] = {}

    # --- set-up ------------------------------------------------------------------------------

    def _load_loss_networks(self, weights_dir: Path) -> None:
        if self.w["vgg"]:
            from facesketch.maps.weights import require

            path = require("vgg19", weights_dir)
            from facesketch.errors import WeightsError
            from facesketch.torchio import safe_load

            self.extra["vgg"] = L.VGGLoss(safe_load(path, WeightsError, "PyTorch state dict")).to(self.device)
        if self.w["edge"]:
            from facesketch.maps import hed
            from facesketch.metrics.networks import load_lpips

            source = self.spec["losses"].get("edge_hed", "official")
            self.extra["edge"] = L.EdgeLoss(hed.load(source, weights_dir), load_lpips(weights_dir)).to(self.device)
        if self.w["normal"]:
            from facesketch.maps import dsine

            self.extra["normal"] = L.NormalLoss(dsine.load(weights_dir)).to(self.device)

    def _check_losses(self) -> None:
        name = self.spec.get("name", "?")
        if self.paired and (self.w["cycle"] or self.w["identity"] or self.w["edge"] or self.w["normal"]):
            raise ConfigError(f"variants.{name}.losses: cycle, identity, edge and normal are unpaired losses")
        if not self.paired and (self.w["l1"] or self.w["textural"] or self.w["geometric"] or self.w["fm"]):
            raise ConfigError(f"variants.{name}.losses: l1, textural, geometric and feature_matching need pairs")
        if self.w["geometric"] and not getattr(self.nets.get("G"), "depth_head", None):
            raise ConfigError(f"variants.{name}: the geometric loss needs a HIDA generator with depth_head")
        if self.paired and self.fake_depth == "reconstructed" and not getattr(self.nets["G"], "depth_head", None):
            raise ConfigError(f"variants.{name}.losses.gan.fake_depth: reconstructed needs a HIDA depth_head")
        if self.w["identity"] and registry.sketch_channels(self.spec) != 3:
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
        for name in self.spec.get("discriminator", {}).get("inputs", ["photo", "sketch"]):
            if name == "photo":
                parts.append(b.photo)
            elif name == "depth":
                parts.append(b.depth if depth is None else depth.to(sketch.dtype))
            else:
                parts.append(sketch)
        return torch.cat(parts, 1)

    def _cl(self, x: torch.Tensor | None) -> torch.Tensor | None:
        if x is not None and self.recipe and self.spec.get("channels_last", False):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def step(self, b: Batch, b2: Batch | None = None) -> dict[str, torch.Tensor]:
        return self._paired(b) if self.paired else self._unpaired(b, b2)

    def _paired(self, b: Batch) -> dict[str, torch.Tensor]:
        G, D, P, w = self.run["G"], self.run["D"], self.precision, self.w
        photo, depth = self._cl(b.photo), self._cl(b.depth)
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
                out["G_vgg"] = w["vgg"] * self.extra["vgg"](fake32, b.sketch)
        loss_g = sum(out.values())
        P.backward_step(loss_g, self.opt_g)
        P.end_step()
        out["D"] = loss_d
        return {k: v.detach() for k, v in out.items()}

    def _sketch_channels(self, sketch: torch.Tensor) -> torch.Tensor:
        return sketch.expand(-1, 3, -1, -1) if registry.sketch_channels(self.spec) == 3 else sketch

    def _unpaired(self, a: Batch, b: Batch) -> dict[str, torch.Tensor]:
        G_A, G_B, D_A, D_B = (self.run[k] for k in ("G_A", "G_B", "D_A", "D_B"))
        P, w = self.precision, self.w
        real_a, real_b = self._cl(a.photo), self._cl(self._sketch_channels(b.sketch))
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
                out["G_edge"] = w["edge"] * self.extra["edge"](real_a, rec_a.float())
            if w["normal"]:
                out["G_normal"] = w["normal"] * self.extra["normal"](real_a, rec_a.float())
        P.backward_step(sum(out.values()), self.opt_g)
        set_requires_grad([self.nets["D_A"], self.nets["D_B"]], True)
        pool_a = self.pools.setdefault("A", ImagePool(self.spec.get("image_pool", 0), self.pool_generator))
        pool_b = self.pools.setdefault("B", ImagePool(self.spec.get("image_pool", 0), self.pool_generator))
        with P.autocast():
            loss_d = (self.gan.d_loss(D_A(real_a), D_A(pool_a.query(fake_a)))
                      + self.gan.d_loss(D_B(real_b), D_B(pool_b.query(fake_b))))
        P.backward_step(loss_d, self.opt_d)
        P.end_step()
        out["D"] = loss_d
        return {k: v.detach() for k, v in out.items()}

    # --- state -------------------------------------------------------------------------------

    pool_generator: torch.Generator | None = None

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
            pool = self.pools.setdefault(k, ImagePool(self.spec.get("image_pool", 0), self.pool_generator))
            pool.load(st)

    def generators(self) -> dict[str, nn.Module]:
        return {k: v for k, v in self.nets.items() if k.startswith("G")}

