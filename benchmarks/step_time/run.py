"""Training-step time of ISaeRFT against the floor and the SAELens error-term path.

One step is forward + backward + optimizer step on the same tokens. Variants, measured
interleaved in one process so machine drift hits all of them alike:

- ``floor``: the frozen model with a trainable zero vector added at the hook (the least any
  method that trains something at that hook must pay); ``floor_again`` is the same step timed
  as a separate variant, so ``floor_again / floor`` shows the run's timing noise;
- ``isaerft``: ``ISaeRFTModel`` with per-latent scales (one encode, sparse decode);
- ``saelens_error_term``: ``HookedSAETransformer`` with the SAE attached using
  ``use_error_term=True`` and a trainable scale on ``hook_sae_acts_post`` (encodes and decodes
  twice);
- ``isaerft_dense``: ISaeRFT with the sparse decode turned off (shows what sparsity buys);
- ``full_finetune``: every weight of the blocks after the hook (and the unembed) trains, the
  usual alternative to training anything at the hook.

Memory is reported as the MiB of tensors autograd saves for backward in one step (exact and
deterministic on any device), plus, on CUDA, the allocator's peak above the resident weights.

Shapes: ``cpu`` (d_sae = 16 d_model, hook at half depth), ``gemma-like`` (Gemma-2-2B's
architecture and proportions with a 16k Gemma Scope SAE, scaled down in width: d_sae/d_model,
vocab/d_model and the hook depth are kept) and ``organism`` (the small model organism's own
model and SAE).

``--prefix-cache`` instead times a 3-epoch ``isaerft.training`` run with and without prefix
caching on a model whose hook sits at 2/3 depth (see ``prefix_time.py``).

Usage::

    python -m benchmarks.step_time [--shape cpu|gemma-like|organism] [--device cpu|cuda] [--quick]
    python -m benchmarks.step_time --prefix-cache [--device cpu|cuda] [--quick]

Results are ratios of median times, written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE, HookedSAETransformer
from sae_lens.saes import TopKSAE, TopKSAEConfig
from transformer_lens import HookedTransformerConfig

from benchmarks.common import RESULTS, machine_info, write_result
from isaerft import ISaeRFTConfig, ISaeRFTModel, __version__

TARGETS: dict[str, tuple[float, float | None]] = {
    "cpu": (1.25, 0.85),
    "gemma-like": (1.05, None),
}
"""The issues' targets per shape: (max ISaeRFT/floor, max ISaeRFT/SAELens error-term path)."""


@dataclass
class Shape:
    """A model/SAE/batch shape. ``d_sae = expansion * d_model`` unless ``d_sae`` is given; the
    hook sits at ``blocks.<hook_layer>.hook_resid_post``; ``arch`` is ``gpt2`` (LayerNorm,
    GELU MLP, learned positions) or ``gemma2`` (RMSNorm before and after each sublayer, gated
    MLP, rotary positions, grouped-query attention, soft-capped attention and logits)."""

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
    d_sae: int | None = None
    arch: str = "gpt2"

    @property
    def width(self) -> int:
        """The SAE's number of latents."""
        return self.d_sae if self.d_sae is not None else self.expansion * self.d_model


SHAPES = {
    # The CPU shape: d_sae = 16 * d_model, hook at the middle.
    "cpu": Shape("cpu", 256, 4, 8, 4096, 16, 32, 2, 8, 128),
    # Gemma-2-2B (d_model 2304, 26 layers, 8 heads / 4 KV heads, vocab 256000) with Gemma
    # Scope's 16k SAE on blocks.12.hook_resid_post, scaled down in width only: d_sae/d_model =
    # 16384/2304 (1820 latents at d_model 256), vocab/d_model ~ 111 (the unembed dominates
    # Gemma's step too), the same depth and hook layer, and Gemma 2's block architecture.
    "gemma-like": Shape("gemma-like", 256, 26, 8, 28416, 7, 64, 12, 4, 128, 1820, "gemma2"),
}


def _model_config(shape: Shape, device: str) -> HookedTransformerConfig:
    common: dict[str, Any] = {
        "n_layers": shape.n_layers,
        "d_model": shape.d_model,
        "n_ctx": shape.seq,
        "d_head": shape.d_model // shape.n_heads,
        "n_heads": shape.n_heads,
        "d_mlp": 4 * shape.d_model,
        "d_vocab": shape.d_vocab,
        "device": device,
    }
    if shape.arch == "gemma2":
        return HookedTransformerConfig(
            **common,
            act_fn="gelu_pytorch_tanh",
            normalization_type="RMS",
            use_normalization_before_and_after=True,
            gated_mlp=True,
            positional_embedding_type="rotary",
            rotary_dim=shape.d_model // shape.n_heads,
            n_key_value_heads=max(1, shape.n_heads // 2),
            attn_scores_soft_cap=50.0,
            output_logits_soft_cap=30.0,
        )
    return HookedTransformerConfig(**common, act_fn="gelu", normalization_type="LN")


def build(shape: Shape, device: str) -> tuple[HookedSAETransformer, SAE[Any]]:
    """A random frozen model and TopK SAE of ``shape`` on ``device``."""
    torch.manual_seed(0)
    model = HookedSAETransformer(_model_config(shape, device)).to(device)
    hook = f"blocks.{shape.hook_layer}.hook_resid_post"
    sae: SAE[Any] = TopKSAE(TopKSAEConfig(d_in=shape.d_model, d_sae=shape.width, k=shape.k))
    sae.cfg.metadata.hook_name = hook
    sae = sae.to(device)
    for module in (model, sae):
        for param in module.parameters():
            param.requires_grad_(False)
    return model, sae


def build_organism_pair(
    preset: str, device: str, batch: int = 16
) -> tuple[Shape, HookedSAETransformer, SAE[Any]]:
    """The ``preset`` organism's model (as a ``HookedSAETransformer``, for the SAELens variant)
    and SAE, and the :class:`Shape` that describes them."""
    from isaerft.organism import build_organism

    org = build_organism(preset, progress=False)
    base, sae = org.load_model(device), org.load_sae(device)
    model = HookedSAETransformer(base.cfg, tokenizer=base.tokenizer, move_to_device=False)
    model.load_state_dict(base.state_dict())
    model = model.to(device)
    layer = int(org.hook_name.split(".")[1])
    cfg = model.cfg
    shape = Shape(
        f"organism-{preset}",
        cfg.d_model,
        cfg.n_layers,
        cfg.n_heads,
        cfg.d_vocab,
        sae.cfg.d_sae // cfg.d_model,
        int(getattr(sae.cfg, "k", 0)),
        layer,
        batch,
        cfg.n_ctx,
        int(sae.cfg.d_sae),
    )
    for module in (model, sae):
        for param in module.parameters():
            param.requires_grad_(False)
    return shape, model, sae


def make_steps(
    model: HookedSAETransformer, sae: SAE[Any], tokens: torch.Tensor
) -> dict[str, Callable[[], None]]:
    """One step function per variant, all on the same tokens (see the module docstring)."""
    hook = sae.cfg.metadata.hook_name
    steps: dict[str, Callable[[], None]] = {}

    def stepper(
        loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor]
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
    # The same floor again, as its own variant: how far two identical steps' medians differ in
    # this run is the timing noise that any ratio here must beat to mean something.
    steps["floor_again"] = stepper(floor_loss, [vector])

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
    # A resid_pre hook sits before its block, which then trains too.
    first = layer if hook.endswith("hook_resid_pre") else layer + 1
    downstream = [p for block in model.blocks[first:] for p in block.parameters()]
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
    order = list(steps)
    shuffle = random.Random(0).shuffle
    for _ in range(repeats):
        # Interleaved, so drift hits every variant alike, in a new random order each round: a
        # step right after full fine-tuning (which allocates and frees every downstream grad)
        # ran up to 1.5x slower, so a fixed (even rotated) order biases whichever comes next.
        shuffle(order)
        for name in order:
            step = steps[name]
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


def run(
    shape: Shape,
    device: str,
    repeats: int,
    warmup: int,
    pair: tuple[HookedSAETransformer, SAE[Any]] | None = None,
) -> dict[str, Any]:
    """Measure every variant on ``shape`` (or on a given model + SAE); the JSON-ready result."""
    model, sae = pair if pair is not None else build(shape, device)
    hook = sae.cfg.metadata.hook_name
    tokens = torch.randint(0, shape.d_vocab, (shape.batch, shape.seq), device=device)
    steps = make_steps(model, sae, tokens)
    result = measure(steps, repeats, warmup, device)
    med = result["median_s"]
    ratios = {
        "isaerft_over_floor": med["isaerft"] / med["floor"],
        "isaerft_over_saelens_error_term": med["isaerft"] / med["saelens_error_term"],
        "isaerft_dense_over_floor": med["isaerft_dense"] / med["floor"],
        "isaerft_over_full_finetune": med["isaerft"] / med["full_finetune"],
        "floor_again_over_floor": med["floor_again"] / med["floor"],
    }
    out = {
        "benchmark": "step_time",
        "isaerft_version": __version__,
        "shape": {**asdict(shape), "hook_name": hook, "hook_depth": _depth(hook, shape)},
        "d_sae": shape.width,
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine_info(device),
        "repeats": repeats,
        "ratios": ratios,
        **result,
    }
    limits = TARGETS.get(shape.name)
    if limits is not None:
        over = ratios["isaerft_over_floor"]
        noise = abs(ratios["floor_again_over_floor"] - 1.0)
        out["target"] = {
            "isaerft_over_floor_max": limits[0],
            "met": over <= limits[0],
            # A ratio within the noise band of 1 says the cost is not resolved, not that it is 0.
            "noise": noise,
            "resolved": abs(over - 1.0) > noise,
        }
        if limits[1] is not None:
            vs_saelens = ratios["isaerft_over_saelens_error_term"]
            out["target"]["isaerft_over_saelens_error_term_max"] = limits[1]
            out["target"]["met_vs_saelens"] = vs_saelens <= limits[1]
    return out


def _depth(hook: str, shape: Shape) -> float:
    """Share of the blocks that run before the hook."""
    layer = int(hook.split(".")[1])
    return (layer if hook.endswith("hook_resid_pre") else layer + 1) / shape.n_layers


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.step_time", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--shape", choices=[*sorted(SHAPES), "organism"], default="cpu")
    parser.add_argument("--organism-preset", default="small", help="for --shape organism")
    parser.add_argument(
        "--prefix-cache",
        action="store_true",
        help="time 3-epoch training runs with/without prefix caching instead",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="default 15 (quick: 5)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device_name = args.device.split(":")[0]
    result: dict[str, Any]
    if args.prefix_cache:
        from .prefix_time import measure_prefix_cache

        repeats = args.repeats or (1 if args.quick else 3)
        result = measure_prefix_cache(device=args.device, repeats=repeats)
        result["machine"] = machine_info(args.device)
        result["quick"] = args.quick
        out = args.out or RESULTS / f"step_time-prefix_cache-{device_name}.json"
        shown = {str(e["shape"]["d_model"]): e["ratios"] for e in result["shapes"]}
    else:
        repeats = args.repeats or (5 if args.quick else 15)
        warmup = 1 if args.quick else args.warmup
        if args.shape == "organism":
            shape, model, sae = build_organism_pair(args.organism_preset, args.device)
            result = run(shape, args.device, repeats, warmup, pair=(model, sae))
        else:
            result = run(SHAPES[args.shape], args.device, repeats, warmup)
        result["quick"] = args.quick
        out = args.out or RESULTS / f"step_time-{args.shape}-{device_name}.json"
        shown = {"median_s": result["median_s"], "ratios": result["ratios"]}
    write_result(out, result)
    print(json.dumps(shown, indent=2))
    print(f"wrote {out}")
