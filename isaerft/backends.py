"""The two kinds of TransformerLens model an ``ISaeRFTModel`` wraps, and where they differ.

* ``transformer_lens.HookedTransformer`` (and ``HookedSAETransformer``): TransformerLens'
  own reimplementation of each architecture, with folded layer norms and centred weights.
* ``transformer_lens.model_bridge.TransformerBridge`` (TransformerLens 3): hook points around
  an unchanged Hugging Face model, for every architecture TransformerLens knows (Gemma 3,
  Qwen 3, Llama, ...). Load one with ``isaerft.load_model(name, bridge=True)`` or
  ``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)``.

Both expose the same hooking interface (``hook_dict``, ``hooks()``, ``run_with_hooks``,
``run_with_cache``, ``generate``, ``to_tokens``, ``cfg``), so the splice itself is shared; the
few differences live here.

Hook names. A bridge names its hook points after its components: ``blocks.L.hook_in``,
``blocks.L.hook_out``, ``blocks.L.attn.hook_out``, ``blocks.L.mlp.hook_out``,
``blocks.L.ln2.hook_in``, ``blocks.L.attn.o.hook_in``, ... It also answers to the
``HookedTransformer`` names as aliases, with or without ``enable_compatibility_mode()``:

| ``HookedTransformer`` name     | bridge hook point it resolves to                               |
|--------------------------------|----------------------------------------------------------------|
| ``blocks.L.hook_resid_pre``    | ``blocks.L.hook_in``                                           |
| ``blocks.L.hook_resid_mid``    | ``blocks.L.ln2.hook_in``                                       |
| ``blocks.L.hook_resid_post``   | ``blocks.L.hook_out``                                          |
| ``blocks.L.hook_attn_out``     | ``blocks.L.attn.hook_out``                                     |
| ``blocks.L.hook_mlp_out``      | ``blocks.L.mlp.hook_out``                                      |
| ``blocks.L.attn.hook_z``       | ``blocks.L.attn.o.hook_in`` (``[batch, pos, head, d_head]``)   |
| ``blocks.L.mlp.hook_post``     | ``blocks.L.mlp.out.hook_in``                                   |

A site is spliced at ``sae.cfg.metadata.hook_name`` in whichever form the SAE gives it, so
SAEs released for ``HookedTransformer`` (``blocks.12.hook_resid_post``) work on a bridge
unchanged, and the saved intervention records that same name. Two SAEs whose names resolve to
the same hook point (``blocks.0.hook_resid_post`` and ``blocks.0.hook_out``) are refused, as
two SAEs at one hook are. ``bridge.hook_dict`` lists both spellings.

Numerics. A bridge computes exactly what its Hugging Face model computes, and an
``ISaeRFTModel`` at initialisation reproduces the bridge it wraps bit for bit (with or without
compatibility mode). Which residual stream an SAE expects depends on the model it was trained
on: on RMSNorm models (Llama, Gemma, Qwen) a ``HookedTransformer``'s residual stream is the
Hugging Face one, but on LayerNorm models (GPT-2) ``HookedTransformer`` centres it (subtracts
each token's mean), and so does a bridge after ``enable_compatibility_mode()``, which folds and
centres weights as ``HookedTransformer`` does. Use an SAE on the kind of model it was trained on.

What a bridge does not do: ``start_at_layer`` (the Hugging Face model owns the layer loop),
so training with ``trainer.prefix_cache`` and the prefix cache are ``HookedTransformer``
only.

Generation. transformers 5.24's decoder layers hand the KV cache to attention as ``cache=``,
which TransformerLens 3.9's bridge attention does not read (it looks for ``past_key_values``):
the cache stays empty and every cached decoding step attends to its own token only, so
``bridge.generate(...)`` with its default KV cache continues from the last token alone.
:func:`generation_kwargs` checks this once per bridge (one short cached generation against a
full forward) and, where the cache is broken, generates without it
(``use_past_kv_cache=False``: slower, correct).
``ISaeRFTModel.generate`` and :func:`isaerft.export.generate.compare_generations` use it.
"""

from __future__ import annotations

import json
import warnings
import weakref
from collections.abc import Sequence
from typing import Any, TypeAlias

import torch
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge import TransformerBridge

from isaerft._fingerprint import weights_digest

#: A model ``ISaeRFTModel`` can wrap.
LanguageModel: TypeAlias = HookedTransformer | TransformerBridge

MODEL_TYPES = (HookedTransformer, TransformerBridge)


def check_language_model(model: Any) -> None:
    """Raise ``TypeError`` unless ``model`` is a ``HookedTransformer`` or ``TransformerBridge``."""
    if not isinstance(model, MODEL_TYPES):
        raise TypeError(
            "model must be a transformer_lens.HookedTransformer or a "
            f"transformer_lens.model_bridge.TransformerBridge, got {type(model).__name__}; "
            "load one with isaerft.load_model(...) (bridge=True for a TransformerBridge)"
        )


def is_bridge(model: Any) -> bool:
    """Whether ``model`` is a ``TransformerBridge`` (else a ``HookedTransformer``)."""
    return isinstance(model, TransformerBridge)


def hook_point(model: LanguageModel, name: str) -> HookPoint | None:
    """The hook point ``name`` (a canonical name or, on a bridge, an alias) or ``None``."""
    return model.hook_dict.get(name)


def canonical_hook_name(model: LanguageModel, name: str) -> str:
    """The name the hook point ``name`` has on ``model`` (on a bridge, aliases resolved)."""
    point = hook_point(model, name)
    if point is None:
        raise KeyError(f"hook {name!r} is not in the model")
    return point.name or name


def supports_start_at_layer(model: LanguageModel) -> bool:
    """Whether ``model(..., start_at_layer=L)`` works (a bridge cannot skip layers)."""
    return not is_bridge(model)


_KV_CACHE_OK: weakref.WeakKeyDictionary[TransformerBridge, bool] = weakref.WeakKeyDictionary()


def generation_kwargs(model: object, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for ``model.generate``, without the KV cache where a bridge's is broken
    (anything but a ``TransformerBridge`` gets them unchanged).

    An explicit ``use_past_kv_cache=True`` is kept, with a warning when it is broken.
    """
    if not isinstance(model, TransformerBridge) or kv_cache_works(model):
        return kwargs
    if kwargs.get("use_past_kv_cache"):
        warnings.warn(
            "this TransformerBridge's KV cache is not filled (TransformerLens and transformers "
            "versions disagree on its name), so cached generation ignores all but the last "
            "token; leave use_past_kv_cache unset to generate without it",
            UserWarning,
            stacklevel=3,
        )
        return kwargs
    return {**kwargs, "use_past_kv_cache": False}


def kv_cache_works(model: TransformerBridge) -> bool:
    """Whether cached generation on ``model`` gives the logits a full forward gives (checked
    once per bridge with a 4-token prompt; a bridge whose check fails counts as broken)."""
    known = _KV_CACHE_OK.get(model)
    if known is not None:
        return known
    prompt = (torch.arange(1, 5) % int(model.cfg.d_vocab)).unsqueeze(0)
    prompt = prompt.to(next(model.parameters()).device)
    try:
        # transformers' deprecation notice for the cache's old name is this very problem.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            out: Any = model.generate(
                prompt,
                max_new_tokens=2,
                do_sample=False,
                use_past_kv_cache=True,
                output_logits=True,
                stop_at_eos=False,
                verbose=False,
            )
            cached = out.logits[-1].float()
            full = model(out.sequences[:, :-1])[:, -1].float()
        works = bool((cached - full).abs().max() <= 0.05 * full.abs().max() + 1e-4)
    except Exception:  # any failure: generate without the cache, which is always right
        works = False
    _KV_CACHE_OK[model] = works
    return works


def weights_fingerprint(model: Any, prefixes: Sequence[str] | None = None) -> str:
    """A sha256 over ``model``'s config and its weights (as float32) whose names start with one
    of ``prefixes`` (all of them with ``None``): what a computation that reads only those
    weights depends on. Kept per live model while those weights stay the same
    (:func:`~isaerft._fingerprint.weights_digest`)."""
    names = sorted(
        n for n in model.state_dict() if prefixes is None or n.startswith(tuple(prefixes))
    )
    cfg = getattr(model, "cfg", None)
    config = {k: str(v) for k, v in sorted(getattr(cfg, "__dict__", {}).items())}
    described = json.dumps({k: v for k, v in config.items() if k != "device"})
    return weights_digest(model, described, names, shapes=False)
