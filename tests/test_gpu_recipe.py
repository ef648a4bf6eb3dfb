"""The GPU training recipe, executed without a GPU.

1. The optimised step on the CPU: inductor-compiled networks, channels_last, bf16 autocast and
   fused Adam, one step of every model family, against the eager fp32 step from the same weights
   and batch; and no graph breaks in any network (torch._dynamo.explain).
2. Fake CUDA: one training step and one inference batch of every family traced with fake
   tensors on ``cuda:0`` (facesketch.train.fake_cuda), failing on CPU tensors, dtype mismatches
   under autocast and host synchronisations.

Sizes are tiny (32x32, 8 filters); even so inductor needs 2-6 minutes per family on a busy
2-core CPU with a cold cache (marked ``slow``); its cache (``.cache/inductor`` in the checkout
unless TORCHINDUCTOR_CACHE_DIR is set) makes reruns take seconds to half a minute.
"""

from __future__ import annotations

import os

import pytest
import torch

from .conftest import REPO

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(REPO / ".cache" / "inductor"))

from facesketch.config import load_config  # noqa: E402
from facesketch.train import compile as C  # noqa: E402
from facesketch.train import fake_cuda as FC  # noqa: E402
from facesketch.train import probe  # noqa: E402

# one variant per model family of config.yaml (HIDA full has the DOG layers; the attention
# CycleGAN has the edge and normal losses, on random-weight HED/LPIPS/DSINE stand-ins here)
FAMILIES = ["pix2pix", "pix2pixhd", "cyclegan", "hida_full", "cyclegan_attn"]
SIZE, NGF, BATCH = 32, 8, 2
CPU = torch.device("cpu")

# Tolerances of the bf16 compiled step against eager fp32 (stated in the terms):
# bf16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 0.2% per op); through ~20 layers and a
# mean the losses agree to a few percent.
LOSS_RTOL = 5e-2
# Adam's first step moves every weight by lr * m / (sqrt(v) + eps) = lr * g / (|g| + eps): about
# +-lr whatever the gradient's size, so a weight can differ by at most 2 lr (a gradient whose sign
# bf16 rounding flipped; many of the smallest gradients do). The gradients themselves must point
# the same way: cosine similarity of each network's whole gradient, bf16 against fp32. Measured
# at these sizes: 0.99-0.999 for most networks.
GRAD_COSINE = 0.9
# A finding, not a tolerance: under bf16 the gradients of HIDA (cosine G 0.33, D 0.79 at 32x32)
# and of Pix2PixHD's generator (G 0.31 since its GAN term sums over the discriminator scales, as
# the reference does; D 0.998) point elsewhere than in fp32 in *eager* bf16 as well, so not
# because of compilation, although their losses agree to under 1%; one more reason paper rows
# train in fp32. Their gradient directions are not asserted.
BF16_GRADIENTS_DIVERGE = {"hida_full", "pix2pixhd"}


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "config.yaml")


def _spec(cfg, variant):
    spec = probe.scaled(cfg["resolved"][variant], SIZE, ngf=NGF, batch=BATCH)
    # the config's GPU recipe (compile, channels_last) is what this test runs; if it changes, so must
    # the test. Paper rows train in fp32; bf16 is the opt-in fast mode, tested here as the riskier one.
    assert spec["precision"] == "fp32" and spec["compile"] and spec["channels_last"]
    return dict(spec, precision="bf16")


def _batches(spec):
    return probe.synthetic_batch(spec, CPU, seed=1), probe.synthetic_batch(spec, CPU, seed=2)


@pytest.fixture
def inductor_rng():
    """Dropout and other random ops of compiled graphs draw from torch's generator as eager does
    (inductor's own generator would give other masks, and the comparison would test nothing)."""
    import torch._inductor.config as ic

    old, ic.fallback_random = ic.fallback_random, True
    yield
    ic.fallback_random = old


@pytest.mark.slow  # inductor compiles each family in 1-6 min on a 2-core CPU when its cache is cold, seconds warm
@pytest.mark.parametrize("variant", FAMILIES)
def test_compiled_bf16_channels_last_step_matches_eager_fp32(cfg, variant, inductor_rng):
    spec = _spec(cfg, variant)
    torch.manual_seed(0)
    eager, _ = probe.build_engine(spec, CPU, recipe=False)
    fast, _ = probe.build_engine(spec, CPU, recipe=True)
    for k, net in fast.nets.items():
        net.load_state_dict(eager.nets[k].state_dict())
    fast.loss_nets = eager.loss_nets  # the same frozen loss networks
    # the recipe is really on: bf16 autocast, channels_last weights, fused Adam; eager is not
    assert fast.precision.dtype == torch.bfloat16 and eager.precision.dtype is None
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for net in fast.nets.values() for p in net.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert fast.opt_g.defaults["fused"] and not eager.opt_g.defaults.get("fused")
    b, b2 = _batches(spec)
    fast.compile(True)
    assert fast.compiled
    fast.warm_up(b, b2)  # compiles every graph of the step; falls back to eager on any failure
    assert fast.compiled, "the compiled step failed on the CPU and fell back to eager (see the log)"

    torch.manual_seed(5)
    loss_e = eager.step(b, b2)
    torch.manual_seed(5)
    loss_f = fast.step(b, b2)
    assert set(loss_e) == set(loss_f)
    for k in loss_e:
        assert loss_f[k].dtype == torch.float32, (k, loss_f[k].dtype)
        assert torch.allclose(loss_f[k], loss_e[k], rtol=LOSS_RTOL, atol=1e-3), (k, loss_f[k], loss_e[k])

    for name in eager.nets:
        lr = spec["optimizer"]["lr_g" if name.startswith("G") else "lr_d"]
        pe, pf = dict(eager.nets[name].named_parameters()), dict(fast.nets[name].named_parameters())
        for key, p in pe.items():
            assert (pf[key] - p).abs().max().item() <= 2 * lr * 1.001 + 1e-7, (name, key)
        ge = torch.cat([p.grad.flatten() for p in pe.values() if p.grad is not None])
        gf = torch.cat([pf[k].grad.flatten() for k, p in pe.items() if p.grad is not None])
        cos = torch.nn.functional.cosine_similarity(ge, gf, dim=0).item()
        print(f"{variant} {name}: gradient cosine bf16/fp32 {cos:.4f}")
        assert cos >= GRAD_COSINE or variant in BF16_GRADIENTS_DIVERGE, (name, cos)


@pytest.mark.parametrize("variant", FAMILIES)
def test_compiled_networks_have_no_graph_breaks(cfg, variant):
    spec = _spec(cfg, variant)
    engine, _ = probe.build_engine(spec, CPU, recipe=True)
    breaks = C.graph_breaks(engine, *_batches(spec))
    assert set(breaks) == set(engine.nets)
    assert breaks == {k: [] for k in engine.nets}, breaks


@pytest.mark.parametrize("variant", FAMILIES)
def test_training_step_and_inference_run_on_fake_cuda(cfg, variant):
    spec = _spec(cfg, variant)
    torch.manual_seed(0)
    engine, _ = probe.build_engine(spec, CPU, recipe=True)
    b, b2 = _batches(spec)
    losses = FC.trace_training_step(engine, b, b2)
    assert set(losses) >= {"G_gan", "D"}
    assert all(v.device == FC.CUDA and v.dtype == torch.float32 for v in losses.values())

    gen, _ = probe.build_engine(spec, CPU)
    g = gen.nets["G"] if "G" in gen.nets else gen.nets["G_A"]
    photo = ((b.photo + 1) * 127.5).round().to(torch.uint8)
    y = FC.trace_inference_batch(g, spec, photo, b.depth, torch.tensor([0, 2]), 40)
    assert tuple(y.shape) == (BATCH, 1, 40, 40)


class _Toy(torch.nn.Module):
    """A generator with one planted device bug (or none)."""

    def __init__(self, bug: str | None):
        super().__init__()
        self.conv, self.bug = torch.nn.Conv2d(3, 1, 3, padding=1), bug

    def forward(self, x, depth=None, style=None):
        y = self.conv(x)
        if self.bug == "cpu_tensor":
            y = y + torch.zeros(y.shape)  # made on the CPU
        elif self.bug == "item":
            y = y * float(y.mean().item())
        elif self.bug == "branch":
            y = y if (y > 0).any() else -y
        elif self.bug == "to_cpu":
            y = y + y.cpu().mean().to(y.device)
        elif self.bug == "host_constant":
            y = y * torch.tensor([0.5], device=y.device)
        elif self.bug == "dtype":  # a bf16 activation into an fp32 layer outside autocast
            y = torch.nn.functional.linear(y.bfloat16().flatten(2), torch.ones(y.shape[-1], y.shape[-1],
                                                                                device=y.device)).view_as(y)
        return y


@pytest.mark.parametrize("bug, message", [
    (None, None), ("cpu_tensor", "FakeTensor"), ("item", "host sync"), ("branch", "host sync"),
    ("to_cpu", "host sync: a CUDA tensor copied to the CPU"), ("host_constant", "host-to-device copy"),
    ("dtype", "dtype")])
def test_fake_cuda_trace_fails_on_each_kind_of_device_bug(cfg, bug, message):
    spec = _spec(cfg, "pix2pix")
    photo = torch.randint(0, 256, (2, 3, SIZE, SIZE), dtype=torch.uint8)
    if bug is None:
        assert FC.trace_inference_batch(_Toy(None), spec, photo, None, torch.tensor([0, 1]), SIZE).shape[1] == 1
        return
    with pytest.raises(FC.DeviceBug, match=message):
        FC.trace_inference_batch(_Toy(bug), spec, photo, None, torch.tensor([0, 1]), SIZE)
