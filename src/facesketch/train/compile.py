"""Compiling an engine's networks (torch.compile, inductor) and the trial step that proves the
compiled graphs run before training starts.

On a GPU this is the training path; on the CPU it runs only when the engine was built with
``gpu_recipe_on_cpu=True`` (the tests and ``facesketch gpu-check`` on a machine without a GPU),
so that the exact recipe a GPU run uses is executed somewhere before a researcher's first GPU job.
"""

from __future__ import annotations

import copy
import logging

import torch

log = logging.getLogger(__name__)


def compile_engine(engine, enabled: bool, cuda_graphs: bool = False) -> None:
    """torch.compile every network of ``engine``; sets ``engine.compiled``. A failure here (or in
    :func:`warm_up`) falls back to eager with a warning."""
    if not enabled:
        return
    if not engine.recipe:
        log.info("torch.compile skipped on the CPU")
        return
    # the default mode compiles in seconds per network; max-autotune would benchmark kernels for
    # minutes per variant, too long for a 15-variant reproduction. CUDA graphs exist only on CUDA.
    mode = "reduce-overhead" if cuda_graphs and engine.device.type == "cuda" else "default"
    eager = dict(engine.step_nets)
    try:
        engine.step_nets = {k: torch.compile(v, mode=mode) for k, v in engine.step_nets.items()}
    except Exception as e:  # noqa: BLE001
        log.warning("torch.compile unavailable (%s): training eagerly", e)
        engine.step_nets = eager
        return
    engine.eager = eager
    engine.compiled = True


def warm_up(engine, batch, batch_b) -> None:
    """Run one step on copies of the state, without touching RNG or weights, so that a compile
    failure shows before training; then fall back to eager if it failed."""
    if not engine.compiled:
        return
    saved = {k: copy.deepcopy(v.state_dict()) for k, v in engine.nets.items()}
    opt_saved = (copy.deepcopy(engine.opt_g.state_dict()), copy.deepcopy(engine.opt_d.state_dict()))
    pools = {k: (p.count, None if p.images is None else p.images.clone()) for k, p in engine.pools.items()}
    cuda = engine.device.type == "cuda"
    try:
        with torch.random.fork_rng(devices=[engine.device] if cuda else []):
            engine.step(batch, batch_b)
        if cuda:
            torch.cuda.synchronize(engine.device)
        log.info("torch.compile: compiled graphs run")
    except Exception as e:  # noqa: BLE001
        log.warning("torch.compile failed on a trial step (%s): training eagerly", str(e).splitlines()[0])
        engine.step_nets, engine.compiled = engine.eager, False
    for k, v in engine.nets.items():
        v.load_state_dict(saved[k])
    engine.opt_g.load_state_dict(opt_saved[0])
    engine.opt_d.load_state_dict(opt_saved[1])
    for k, (count, images) in pools.items():
        engine.pools[k].count, engine.pools[k].images = count, images


def network_calls(engine, b, b2=None) -> dict[str, tuple]:
    """The arguments each network gets in a training step (as ``Engine.step`` calls them), for
    :func:`graph_breaks`; the discriminators see the real inputs."""
    run = getattr(engine, "eager", engine.step_nets)
    if engine.paired:
        photo, depth = engine._memory_format(b.photo), engine._memory_format(b.depth)
        return {"G": (run["G"], (photo, depth, b.style)), "D": (run["D"], (engine._d_input(b, b.sketch),))}
    real_a, real_b = engine._memory_format(b.photo), engine._memory_format(engine._sketch_channels(b2.sketch))
    return {"G_A": (run["G_A"], (real_a,)), "G_B": (run["G_B"], (real_b,)),
            "D_A": (run["D_A"], (real_a,)), "D_B": (run["D_B"], (real_b,))}


def graph_breaks(engine, b, b2=None) -> dict[str, list[str]]:
    """{network: [reason of each graph break]} from ``torch._dynamo.explain`` under the engine's
    autocast; empty lists mean each network compiles to one graph."""
    import torch._dynamo

    out = {}
    for name, (net, args) in network_calls(engine, b, b2).items():
        torch._dynamo.reset()
        with engine.precision.autocast():
            report = torch._dynamo.explain(net)(*args)
        out[name] = [str(r.reason).splitlines()[0] for r in report.break_reasons]
    torch._dynamo.reset()
    return out
