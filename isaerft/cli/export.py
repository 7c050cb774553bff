"""``isaerft export`` (vectors in five formats) and ``isaerft generate`` (three continuations)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isaerft.cli.errors import check_output_file

if TYPE_CHECKING:
    from isaerft.export.formats import WriteOptions
    from isaerft.model import ISaeRFTModel

# The names of isaerft.export.formats' table, listed here so that `--help` needs no torch
# import; tests/export/test_formats.py keeps the two in step.
FORMATS = ("safetensors", "gguf", "neuronpedia", "steering-vectors", "lm-eval")


def register(subparsers: Any) -> None:
    """Add the ``export`` and ``generate`` sub-commands."""
    export = subparsers.add_parser(
        "export",
        help="export a trained intervention as steering vectors",
        description=(
            "Turn each site's trained edit into a residual vector (exact for bias edits, averaged "
            "over --data for scale edits) and write it as safetensors, a llama.cpp GGUF control "
            "vector, a Neuronpedia payload, a steering-vectors file or an lm-evaluation-harness "
            "steered-model file (.pt)."
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
    export.add_argument(
        "--hf-layers",
        metavar="MODULE",
        help="lm-eval: the decoder-layer list under model.base_model ('h' for GPT-2, 'layers' for "
        "Llama), when the model's Hugging Face architecture is not known to isaerft",
    )
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
    parser.add_argument(
        "--bridge",
        action="store_true",
        help="load --model (a Hugging Face hub name or checkpoint folder) as a TransformerLens "
        "TransformerBridge (Gemma 3, Qwen 3, ...)",
    )
    parser.add_argument("--device", help="torch device (default: cpu, or the run's own)")


def _open(args: argparse.Namespace) -> ISaeRFTModel:
    from isaerft.export import load_isaerft_model
    from isaerft.specs import resolve_model_spec, resolve_sae_spec

    # ``organism:<size>`` specs are resolved here as ``train`` and ``audit`` resolve them.
    if args.bridge and not args.model:
        raise ValueError("--bridge applies to --model; a run's own recipe says how to load it")
    model_spec = resolve_model_spec(args.model) if args.model else None
    sae_specs = [resolve_sae_spec(s) for s in args.sae] if args.sae else None
    return load_isaerft_model(
        args.run,
        model_spec=model_spec,
        sae_specs=sae_specs,
        device=args.device,
        bridge=args.bridge,
    )


def run_export(args: argparse.Namespace) -> int:
    """Compute the vectors of ``args.run`` and write them in ``args.format`` to ``args.out``."""
    from isaerft.export import read_texts, split_heldout, vectors_from_model
    from isaerft.export.formats import get_format

    check_output_file(args.out, "--out")
    model = _open(args)
    options = _write_options(args, model)
    get_format(args.format).check(model, options)  # refuse sites before any data averaging
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
    path = get_format(args.format).write(vectors, args.out, options)
    print(vectors.summary())
    print(f"wrote {args.format} to {path}")
    usage = get_format(args.format).usage(vectors, path)
    if usage:
        print(usage)
    return 0


def _write_options(args: argparse.Namespace, model: ISaeRFTModel) -> WriteOptions:
    from isaerft.export.formats import WriteOptions
    from isaerft.export.lm_eval import hf_architecture

    return WriteOptions(
        model_hint=args.model_hint,
        neuronpedia_id=_neuronpedia_ids(args.neuronpedia_id),
        label=args.label,
        strength=args.strength,
        max_features=args.max_features,
        hf_architecture=hf_architecture(model.model),
        hf_layers=args.hf_layers,
    )


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
    from isaerft.export import compare_generations, vectors_from_model

    prompts = [unescape(p) for p in args.prompt]
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
    for prompt in prompts:
        texts = compare_generations(
            model,
            prompt,
            vectors=vectors,
            multiplier=args.multiplier,
            max_new_tokens=_fit_context(model, prompt, args.max_new_tokens),
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


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` typed on a command line become a newline, a tab and a
    backslash (prompts often need a newline, e.g. before ``Assistant:``)."""
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(_ESCAPES.get(nxt, char + nxt))
        else:
            out.append(char)
    return "".join(out)


def _fit_context(model: ISaeRFTModel, prompt: str, max_new_tokens: int) -> int:
    """``max_new_tokens``, lowered (with a warning) to what the model's context leaves."""
    import sys

    n_ctx = model.model.cfg.n_ctx
    length = int(model.model.to_tokens(prompt).shape[1])
    if length >= n_ctx:
        raise ValueError(
            f"--prompt is {length} tokens but the model's context is {n_ctx}; shorten the prompt"
        )
    room = n_ctx - length
    if max_new_tokens > room:
        print(
            f"isaerft: warning: the prompt is {length} of {n_ctx} context tokens; generating "
            f"{room} new tokens instead of --max-new-tokens {max_new_tokens}",
            file=sys.stderr,
        )
        return room
    return max_new_tokens
