"""Tracing a training step and an inference batch on a CUDA device that does not exist.

PyTorch's fake tensors (``FakeTensorMode``) carry shapes, dtypes and devices but no data, and
run every op through its meta kernel: a step traced with tensors that claim ``cuda:0`` shows,
on a machine without a GPU, the device bugs a GPU run would hit:

- a tensor made on the CPU inside the step and mixed with CUDA tensors: fake tensors raise
  on the mixed op, as CUDA would (0-dim CPU tensors are allowed, as on CUDA);
- a dtype mismatch under bf16 autocast (say, a bf16 image written into an fp32 buffer): the
  meta kernels check dtypes as the CUDA kernels do;
- a host synchronisation: ``.item()``, ``bool()``/``int()`` of a tensor (a Python branch on a
  tensor value) and ops whose output shape depends on values cannot run on fake tensors at
  all; device-to-host copies (``.cpu()``, ``.to("cpu")``) can, so :class:`HostSyncGuard`
  records them.

torchvision's ``deform_conv2d`` (HIDA's DOG layers) needs no work-around: torchvision registers
meta kernels for it and its backward (``torchvision/_meta_registrations.py``), so fake tensors
run it like any aten op. The backward pass itself is not traced: torch's C++ autograd engine asks the CUDA driver about
the device (``hasPrimaryContext``) before it runs any node, which needs a real GPU. The
backward kernels are autograd's own (facesketch has no custom ``autograd.Function``), so the
trace stands in for them: every parameter the loss reaches (found by walking ``loss.grad_fn``)
gets a zero gradient of its own shape, device and memory format, and the optimiser step
(fused Adam on CUDA) runs on those. Likewise ``torch.autocast("cuda")`` switches itself off
without a GPU, so the trace enters CUDA autocast through the lower-level switches it sets.
Not covered: the values themselves (fake tensors have none), cuDNN
algorithm choice, and the image pool's random swaps (a CUDA generator cannot exist without a
GPU; one step never fills a pool of 50).
"""

from __future__ import annotations

import contextlib
import copy
import traceback
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten
# ops whose CUDA kernels refuse floating inputs of different dtypes but whose meta kernels (what
# fake tensors run) do not check: HostSyncGuard checks them (convolutions' meta kernels do)
_SAME_DTYPE_OPS = {
    getattr(aten, n).default for n in ("mm", "addmm", "bmm", "baddbmm", "mv", "addmv", "index_copy", "index_copy_",
                                       "masked_scatter", "masked_scatter_")
} | {aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default, aten.scatter.src,
     aten.scatter_.src}
CUDA = torch.device("cuda", 0)
_HERE = Path(__file__).name


class DeviceBug(AssertionError):
    """A device bug found while tracing on fake CUDA tensors."""


def _where() -> str:
    """The innermost facesketch source line of the current stack (what to fix)."""
    for frame in reversed(traceback.extract_stack()):
        if "facesketch" in frame.filename and not frame.filename.endswith(_HERE):
            return f"{Path(frame.filename).name}:{frame.lineno} ({frame.line})"
    return "outside facesketch"


class HostSyncGuard(TorchDispatchMode):
    """Records what fake tensors let through of a traced step: host synchronisations
    (device-to-host copies, reads of a tensor's value), host-to-device copies, CPU tensors made in
    the step, and dtype mismatches the meta kernels do not check. Entered inside
    ``FakeTensorMode`` so it sees each op before the fake kernels."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten._local_scalar_dense.default:
            self._flag("host sync: a tensor's value read on the host (.item(), bool(), a Python branch)")
        elif func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst = args[0].device if func is aten.copy_.default else kwargs.get("device")
            if isinstance(src, torch.Tensor) and dst is not None:
                kinds = (src.device.type, torch.device(dst).type)
                if kinds == ("cuda", "cpu"):
                    self._flag("host sync: a CUDA tensor copied to the CPU (.cpu(), .to('cpu'))")
                elif kinds == ("cpu", "cuda") and src.dim() > 0:
                    # a blocking copy from pageable memory: waits for the GPU, and breaks CUDA graphs
                    self._flag("host-to-device copy in the step (a CPU tensor moved to the GPU, e.g. "
                               "torch.tensor(list, device=...))")
        elif func in _SAME_DTYPE_OPS:
            dtypes = {t.dtype for t in tree_leaves((args, kwargs))
                      if isinstance(t, torch.Tensor) and t.is_floating_point()}
            if len(dtypes) > 1:
                self._flag(f"dtype mismatch: {func} on {sorted(map(str, dtypes))} (CUDA refuses it; autocast does "
                           "not cover this op or this call)")
        out = func(*args, **kwargs)
        if func is not aten.lift_fresh.default and any(
                isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dim() > 0 for t in tree_leaves(out)):
            self._flag(f"CPU tensor made in the step ({func})")
        return out

    def _flag(self, what: str) -> None:
        where = _where()
        if not any(where in p for p in self.problems):
            self.problems.append(f"{what} at {where}")


def _fake_cuda_module(module: nn.Module, mode, memo: dict) -> None:
    """Replace every parameter and buffer of ``module`` by a fake tensor on CUDA, in place
    (``Module.to`` cannot swap in fake tensors)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    def fake(t):
        with unset_fake_temporarily():  # from_tensor reads the real tensor outside the mode
            f = mode.from_tensor(t.detach())
        return f.to(CUDA)

    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                if id(p) not in memo:
                    memo[id(p)] = nn.Parameter(fake(p), requires_grad=p.requires_grad)
                m._parameters[name] = memo[id(p)]
        for name, b in list(m._buffers.items()):
            if b is not None:
                if id(b) not in memo:
                    memo[id(b)] = fake(b)
                m._buffers[name] = memo[id(b)]


def _fake_cuda(tensors, mode) -> list:
    """Fake CUDA copies of real CPU tensors (None stays None)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():
        fakes = [None if t is None else mode.from_tensor(t) for t in tensors]
    return [None if t is None else t.to(CUDA) for t in fakes]


def _fake_cuda_batch(batch, mode):
    from facesketch.train.data import Batch

    return Batch(*_fake_cuda([batch.photo, batch.sketch, batch.depth, batch.style, batch.index], mode))


def _reached_parameters(loss: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors ``loss.backward()`` would write gradients into."""
    seen, stack, leaves = set(), [loss.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad
            leaves.append(node.variable)
        stack.extend(fn for fn, _ in node.next_functions)
    return leaves


@contextlib.contextmanager
def _cuda_autocast(dtype: torch.dtype):
    """``torch.autocast("cuda", dtype)`` by its switches (the context manager refuses without a GPU)."""
    enabled, old = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", dtype)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()
        torch.set_autocast_enabled("cuda", enabled)
        torch.set_autocast_dtype("cuda", old)


class _FakeCudaPrecision:
    """The engine's Precision on fake CUDA: real CUDA autocast; backward replaced as described
    in the module docstring; the optimiser step runs."""

    def __init__(self, precision):
        self.kind, self.dtype, self.device, self.scaler = precision.kind, precision.dtype, CUDA, None
        if precision.kind == "fp16":
            raise DeviceBug("fp16 (GradScaler) is not traced on fake CUDA; the configs use bf16 or fp32")

    def autocast(self):
        return contextlib.nullcontext() if self.dtype is None else _cuda_autocast(self.dtype)

    def backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        if loss.device != CUDA or loss.dtype != torch.float32 or loss.dim() != 0:
            raise DeviceBug(f"a loss is {loss.dtype} {tuple(loss.shape)} on {loss.device}: expected a float32 scalar "
                            f"on {CUDA}")
        for p in _reached_parameters(loss):
            if p.requires_grad:
                g = torch.zeros_like(p)
                p.grad = g if p.grad is None else p.grad + g
        opt.step()

    def end_step(self) -> None:
        pass


def _move_engine(engine, mode) -> None:
    """The engine as it would be built on ``cuda:0``: fake CUDA weights, CUDA optimisers (fused),
    CUDA precision (autocast on CUDA), channels_last as configured."""
    from facesketch.train.engine import Precision
    from facesketch.train.schedule import make_optimizer

    memo: dict = {}
    for net in list(engine.nets.values()) + list(engine.loss_nets.values()):
        _fake_cuda_module(net, mode, memo)
    engine.device, engine.recipe = CUDA, True
    if engine.spec.get("channels_last", False):
        for net in engine.nets.values():
            for p in net.parameters():
                if p.dim() == 4:
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
    engine.precision = _FakeCudaPrecision(Precision(engine.spec.get("precision", "fp32"), CUDA))
    opt = engine.spec["optimizer"]
    if engine.paired:
        g, d = list(engine.nets["G"].parameters()), list(engine.nets["D"].parameters())
    else:
        g = list(engine.nets["G_A"].parameters()) + list(engine.nets["G_B"].parameters())
        d = list(engine.nets["D_A"].parameters()) + list(engine.nets["D_B"].parameters())
    engine.opt_g = make_optimizer(g, opt, opt["lr_g"], CUDA, True)
    engine.opt_d = make_optimizer(d, opt, opt["lr_d"], CUDA, True)


def _run(fn, what: str):
    guard = HostSyncGuard()
    try:
        with guard:
            out = fn()
    except Exception as e:
        if isinstance(e, DeviceBug):
            raise
        raise DeviceBug(f"{what} fails on fake CUDA tensors: {type(e).__name__}: {str(e).splitlines()[0]}"
                        + "".join(f"\n  {p}" for p in guard.problems)) from e
    if guard.problems:
        raise DeviceBug(f"{what}:" + "".join(f"\n  {p}" for p in guard.problems))
    return out


def trace_training_step(engine, batch, batch_b=None) -> dict[str, torch.Tensor]:
    """One ``engine.step`` on fake CUDA copies of a CPU-built engine and CPU batches; raises
    :class:`DeviceBug` naming each problem. Returns the (fake) losses; the engine is spent."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    engine.loss_nets = {k: copy.deepcopy(v) for k, v in engine.loss_nets.items()}  # may be shared (probe's stand-ins)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:  # CPU constants reach HostSyncGuard
        _move_engine(engine, mode)
        b = _fake_cuda_batch(batch, mode)
        b2 = None if batch_b is None else _fake_cuda_batch(batch_b, mode)
        losses = _run(lambda: engine.step(b, b2), f"{engine.spec.get('name', '?')} training step")
        for k, v in losses.items():
            if v.device != CUDA or v.dtype != torch.float32:
                raise DeviceBug(f"loss {k} is {v.dtype} on {v.device}, expected float32 on {CUDA}")
        return losses


def trace_inference_batch(generator: nn.Module, spec: dict, photo_u8, depth, style_idx, size: int):
    """The device part of ``infer.draw`` (inputs to the grey [-1, 1] output, before the one
    intended copy to the host) on a fake CUDA copy of ``generator``, in eval mode, under the
    variant's autocast, as inference runs it."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from facesketch.train.infer import network_inputs, network_outputs

    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        _fake_cuda_module(generator, mode, {})
        generator.eval()
        photo, d, style_idx = _fake_cuda([photo_u8, depth, style_idx], mode)
        style = torch.nn.functional.one_hot(style_idx, 3).float()

        def run():
            with torch.no_grad():
                x, dd = network_inputs(photo, d, spec)
                return network_outputs(generator(x, dd, style), spec, size)

        y = _run(run, f"{spec.get('name', '?')} inference batch")
        if y.device != CUDA or tuple(y.shape) != (photo.shape[0], 1, size, size):
            raise DeviceBug(f"inference output {tuple(y.shape)} on {y.device}, expected ({photo.shape[0]}, 1, {size}, "
                            f"{size}) on {CUDA}")
        return y
