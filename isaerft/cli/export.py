"""``isaerft export`` (vectors in four formats) and ``isaerft generate`` (three continuations)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from isaerft._io import write_json
from isaerft.export import (
    SteeringVectors,
    compare_generations,
    llama_cpp_layer,
    load_isaerft_model,
    neuronpedia_layer,
    neuronpedia_payload,
    read_texts,
    save_gguf,
    save_steering_vectors,
    split_heldout,
    steering_vectors_layer,
    vectors_from_model,
)
from isaerft.model import ISaeRFTModel

FORMATS = ("safetensors", "gguf", "neuronpedia", "steering-vectors")


def register(subparsers: Any) -> None:
    """Add the ``export`` and ``generate`` sub-commands."""
    export = subparsers.add_parser(
        "export",
        help="export a trained intervention as steering vectors",
        description=(
            "Turn each site's trained edit into a residual vector (exact for bias edits, averaged "
            "over --data for scale edits) and write it as safetensors, a llama.cpp GGUF control "
            "vector, a Neuronpedia payload or a steering-vectors file."
        ),
    )
    _add_run_arguments(export)
    export.add_argument("--format", choices=FORMATS, required=True, help="output format")
    export.add_argument("--out", required=True, type=Path, help="file to write")
    export.add_argument(
        "--data",
        type=Path,
        help="texts (.jsonl with 'text' or 'prompt'+'completion', else one per line) to average "
        "input-dependent edits over; every 5th text is held out for the approximation gap",
    )
    export.add_argument("--eval-data", type=Path, help="held-out texts for the approximation gap")
    export.add_argument("--max-rows", type=int, default=2000, help="read at most this many texts")
    export.add_argument("--batch-size", type=int, default=8)
    export.add_argument("--model-hint", help="GGUF controlvector.model_hint (default: model name)")
    export.add_argument(
        "--neuronpedia-id",
        action="append",
        metavar="[HOOK=]MODEL_ID/SOURCE",
        help="Neuronpedia id of the SAE when its metadata lacks one (repeat as HOOK=ID per site)",
    )
    export.add_argument("--label", help="Neuronpedia vectorLabel")
    export.add_argument("--strength", type=float, default=1.0, help="Neuronpedia default strength")
    export.add_argument("--max-features", type=int, help="Neuronpedia: features kept per site")
    export.set_defaults(func=run_export)

    generate = subparsers.add_parser(
        "generate",
        help="print base, ISaeRFT and steered continuations side by side",
        description=(
            "Continue a prompt with the base model, the trained ISaeRFT model and the base model "
            "steered by exported vectors, all from the same seed."
        ),
    )
    _add_run_arguments(generate)
    generate.add_argument("--prompt", required=True, action="append", help="prompt (repeatable)")
    generate.add_argument(
        "--vectors",
        type=Path,
        help="vector file from `isaerft export` (safetensors, gguf or steering-vectors); "
        "default: the run's exact vectors when every edit is a bias",
    )
    generate.add_argument("--multiplier", type=float, default=1.0, help="scale of the vectors")
    generate.add_argument("--max-new-tokens", type=int, default=32)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=run_generate)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="training run directory or intervention folder")
    parser.add_argument("--model", help="base model (local folder or TransformerLens name)")
    parser.add_argument("--sae", action="append", help="SAE folder or release::sae_id (repeatable)")
    parser.add_argument("--device", help="torch device (default: cpu, or the run's own)")


def _open(args: argparse.Namespace) -> ISaeRFTModel:
    return load_isaerft_model(
        args.run, model_spec=args.model, sae_specs=args.sae, device=args.device
    )


def run_export(args: argparse.Namespace) -> int:
    """Compute the vectors of ``args.run`` and write them in ``args.format`` to ``args.out``."""
    model = _open(args)
    _preflight(model, args)
    fit = heldout = None
    if args.data is not None:
        fit = read_texts(args.data, max_rows=args.max_rows)
        if args.eval_data is None:
            fit, heldout = split_heldout(fit)
    if args.eval_data is not None:
        heldout = read_texts(args.eval_data, max_rows=args.max_rows)
    vectors = vectors_from_model(
        model, fit, eval_data=heldout, batch_size=args.batch_size, source_run=str(args.run)
    )
    path = write_format(vectors, args)
    print(vectors.summary())
    print(f"wrote {args.format} to {path}")
    if args.format == "gguf":
        layers = [llama_cpp_layer(h, vectors.n_layers) for h in vectors.hook_names]
        print(
            f"use: llama-cli -m MODEL.gguf --control-vector-scaled {path}:1.0 "
            f"--control-vector-layer-range {min(layers)} {max(layers)}"
        )
    return 0


def _preflight(model: ISaeRFTModel, args: argparse.Namespace) -> None:
    """Refuse sites the format cannot take before spending time on data averaging."""
    n_layers = model.model.cfg.n_layers
    for hook in model.hook_names:
        if args.format == "gguf":
            llama_cpp_layer(hook, n_layers)
        elif args.format == "steering-vectors":
            steering_vectors_layer(hook)
        elif args.format == "neuronpedia":
            neuronpedia_layer(hook, n_layers)
            ids = _neuronpedia_ids(args.neuronpedia_id)
            known = ids if isinstance(ids, str) else (ids or {}).get(hook)
            if not known and not model.site(hook).sae.cfg.metadata.get("neuronpedia_id"):
                raise ValueError(
                    f"the SAE at {hook!r} has no cfg.metadata.neuronpedia_id; pass "
                    "--neuronpedia-id MODEL_ID/SOURCE (HOOK=MODEL_ID/SOURCE for several sites)"
                )


def write_format(vectors: SteeringVectors, args: argparse.Namespace) -> Path:
    """Write ``vectors`` in ``args.format``; refused sites raise before anything is written."""
    if args.format == "safetensors":
        return vectors.save(args.out)
    if args.format == "gguf":
        return save_gguf(vectors, args.out, model_hint=args.model_hint)
    if args.format == "steering-vectors":
        return save_steering_vectors(vectors, args.out)
    payload = neuronpedia_payload(
        vectors,
        neuronpedia_id=_neuronpedia_ids(args.neuronpedia_id),
        label=args.label,
        default_strength=args.strength,
        max_features=args.max_features,
    )
    return write_json(args.out, payload)


def _neuronpedia_ids(values: list[str] | None) -> str | dict[str, str] | None:
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    pairs = {}
    for value in values:
        hook, sep, np_id = value.partition("=")
        if not sep:
            raise ValueError(
                f"--neuronpedia-id {value!r}: with several ids, write HOOK=MODEL_ID/SOURCE"
            )
        pairs[hook] = np_id
    return pairs


def run_generate(args: argparse.Namespace) -> int:
    """Print base, ISaeRFT and steered continuations of each prompt, one row per variant."""
    model = _open(args)
    vectors: Any = args.vectors
    note = f"{args.vectors} x {args.multiplier:g}" if vectors is not None else ""
    if vectors is None:
        try:
            vectors = vectors_from_model(model)
            note = f"exact vectors x {args.multiplier:g}"
        except ValueError:
            note = (
                "skipped: this run's edits have no exact vector; "
                "`isaerft export RUN --data FILE` and pass --vectors FILE"
            )
    for prompt in args.prompt:
        texts = compare_generations(
            model,
            prompt,
            vectors=vectors,
            multiplier=args.multiplier,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
        )
        print(f"{'prompt':<8} | {prompt!r}")
        for name in ("base", "isaerft", "steered"):
            shown = repr(texts[name]) if name in texts else ""
            suffix = f"   [{note}]" if name == "steered" else ""
            print(f"{name:<8} | {shown}{suffix}")
        print()
    return 0
