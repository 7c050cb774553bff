"""Training-step time of ISaeRFT against the floor and the SAELens error-term path.

One step is forward + backward + optimizer step on the same tokens. Variants, measured
interleaved in one process so machine drift hits all of them alike:

- ``floor``: the frozen model with a trainable zero vector added at the hook (the least any
  method that trains something at that hook must pay);
- ``isaerft``: ``ISaeRFTModel`` with per-latent scales (one encode, sparse decode);
- ``saelens_error_term``: ``HookedSAETransformer`` with the SAE attached using
  ``use_error_term=True`` and a trainable scale on ``hook_sae_acts_post`` (encodes and decodes
  twice);
- ``isaerft_dense``: ISaeRFT with the sparse decode turned off (shows what sparsity buys);
- ``full_finetune``: every weight of the blocks after the hook (and the unembed) trains, the
  usual alternative to training anything at the hook.

Memory is reported as the MiB of tensors autograd saves for backward in one step (exact and
deterministic on any device), plus, on CUDA, the allocator's peak above the resident weights.

Usage: ``python benchmarks/step_time.py [--shape cpu|gemma-like] [--device cpu|cuda] [--out FILE]``.
Results are ratios of median step times, written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from sae_lens import HookedSAETransformer
from sae_lens.saes import TopKSAE, TopKSAEConfig
from transformer_lens import HookedTransformerConfig

from isaerft import ISaeRFTConfig, ISaeRFTModel, __version__

RESULTS = Path(__file__).parent / "results"


@dataclass
class Shape:
    """A model/SAE/batch shape. ``d_sae = expansion * d_model``; the hook sits at ``hook_layer``."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    d_vocab: int
    expansion: int
    k: int
    hook_layer: int
    batch: int
    seq: int


SHAPES = {
    # The CPU shape: d_sae = 16 * d_model, hook at the middle.
    "cpu": Shape("cpu", 256, 4, 8, 4096, 16, 32, 2, 8, 128),
    # Gemma-2-2B's proportions scaled down in width: 26 layers, hook at layer 12 (~half depth),
    # d_sae/d_model = 16384/2304 ~ 7, vocab/d_model ~ 111 (kept, the unembed dominates Gemma too).
    "gemma-like": Shape("gemma-like", 256, 26, 8, 28416, 7, 64, 12, 4, 128),
}


def build(shape: Shape, device: str) -> tuple[HookedSAETransformer, TopKSAE]:
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=shape.n_layers,
        d_model=shape.d_model,
        n_ctx=shape.seq,
        d_head=shape.d_model // shape.n_heads,
        n_heads=shape.n_heads,
        d_mlp=4 * shape.d_model,
        d_vocab=shape.d_vocab,
        act_fn="gelu",
        normalization_type="LN",
        device=device,
    )
    model = HookedSAETransformer(cfg).to(device)
    hook = f"blocks.{shape.hook_layer}.hook_resid_post"
    sae = TopKSAE(
        TopKSAEConfig(d_in=shape.d_model, d_sae=shape.expansion * shape.d_model, k=shape.k)
    )
    sae.cfg.metadata.hook_name = hook
    sae = sae.to(device)
    for module in (model, sae):
        for param in module.parameters():
            param.requires_grad_(False)
    return model, sae


def make_steps(
    model: HookedSAETransformer, sae: TopKSAE, tokens: torch.Tensor
) -> dict[str, Callable[[], None]]:
    hook = sae.cfg.metadata.hook_name
    steps: dict[str, Callable[[], None]] = {}

    def stepper(
        loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor]
    ) -> Callable[[], None]:
        opt = torch.optim.Adam(params, lr=1e-3)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn().backward()
            opt.step()

        return step

    vector = torch.zeros(model.cfg.d_model, device=tokens.device, requires_grad=True)

    def floor_loss() -> torch.Tensor:
        fwd = [(hook, lambda act, hook: act + vector)]
        return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=fwd)

    steps["floor"] = stepper(floor_loss, [vector])

    for name, density in (("isaerft", 0.05), ("isaerft_dense", 0.0)):
        wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(sparse_decode_density=density))

        def isaerft_loss(wrapped: ISaeRFTModel = wrapped) -> torch.Tensor:
            return wrapped(tokens, return_type="loss")

        steps[name] = stepper(isaerft_loss, wrapped.trainable_parameters())

    scale = torch.zeros(sae.cfg.d_sae, device=tokens.device, requires_grad=True)

    def saelens_loss() -> torch.Tensor:
        fwd = [(f"{hook}.hook_sae_acts_post", lambda acts, hook: acts * (1 + scale))]
        with model.saes(saes=[sae], use_error_term=True):
            return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=fwd)

    steps["saelens_error_term"] = stepper(saelens_loss, [scale])

    layer = int(hook.split(".")[1])
    downstream = [p for block in model.blocks[layer + 1 :] for p in block.parameters()]
    downstream += list(model.ln_final.parameters()) + list(model.unembed.parameters())
    # lr=0 keeps the shared model unchanged for the other variants; the work is the same.
    full_opt = torch.optim.Adam(downstream, lr=0.0)

    def full_step() -> None:
        for param in downstream:
            param.requires_grad_(True)
        full_opt.zero_grad(set_to_none=True)
        model(tokens, return_type="loss").backward()
        full_opt.step()
        for param in downstream:
            param.requires_grad_(False)
            param.grad = None

    steps["full_finetune"] = full_step
    return steps


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def saved_for_backward_mib(step: Callable[[], None]) -> float:
    """MiB of distinct tensors autograd saves for backward during one step.

    Deterministic on any device, and the part of a step's memory that differs between
    methods (weights are shared; optimizer state is counted separately)."""
    seen: dict[tuple[int, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(seen.values()) / 2**20


def measure(
    steps: dict[str, Callable[[], None]], repeats: int, warmup: int, device: str
) -> dict[str, Any]:
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():  # interleaved: drift hits every variant alike
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    saved = {name: round(saved_for_backward_mib(step), 2) for name, step in steps.items()}
    peak: dict[str, float] = {}
    if device.startswith("cuda"):
        for name, step in steps.items():
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            peak[name] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 2)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "median_s": medians,
        "all_s": times,
        "saved_for_backward_mib": saved,
        "cuda_peak_above_weights_mib": peak or None,
    }


def run(shape: Shape, device: str, repeats: int, warmup: int) -> dict[str, Any]:
    model, sae = build(shape, device)
    tokens = torch.randint(0, shape.d_vocab, (shape.batch, shape.seq), device=device)
    steps = make_steps(model, sae, tokens)
    result = measure(steps, repeats, warmup, device)
    med = result["median_s"]
    ratios = {
        "isaerft_over_floor": med["isaerft"] / med["floor"],
        "isaerft_over_saelens_error_term": med["isaerft"] / med["saelens_error_term"],
        "isaerft_dense_over_floor": med["isaerft_dense"] / med["floor"],
        "isaerft_over_full_finetune": med["isaerft"] / med["full_finetune"],
    }
    return {
        "benchmark": "step_time",
        "isaerft_version": __version__,
        "shape": asdict(shape),
        "d_sae": shape.expansion * shape.d_model,
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "repeats": repeats,
        "ratios": ratios,
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = run(SHAPES[args.shape], args.device, args.repeats, args.warmup)
    out = args.out or RESULTS / f"step_time-{args.shape}-{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"median_s": result["median_s"], "ratios": result["ratios"]}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
