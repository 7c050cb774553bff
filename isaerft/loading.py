"""Loading language models and SAEs: hub names for users with a network, local folders for everyone.

Local model format (written by :func:`save_model`, read by :func:`load_model`)::

    DIR/isaerft_model.json       {"format": "isaerft.hooked_transformer", "format_version": 1, "cfg": {...}}
    DIR/model.safetensors        HookedTransformer state dict
    DIR/tokenizer.json (+ HF tokenizer files, optional)

A ``transformer_lens.model_bridge.TransformerBridge`` (``load_model(..., bridge=True)``) wraps a
Hugging Face model instead: a hub name, a local Hugging Face checkpoint folder, or a model
already built in memory (``hf_model=``). See :mod:`isaerft.backends`.

SAEs use SAELens' own directory format (``cfg.json`` + ``sae_weights.safetensors``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal, overload

import torch
from sae_lens import SAE
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.model_bridge import TransformerBridge

from isaerft._io import (
    read_safetensors,
    read_versioned_json,
    write_json,
    write_safetensors,
)
from isaerft.specs import (
    SAE_SPEC_SEPARATOR,
    organism_size,
    resolve_model_spec,
    resolve_sae_spec,
    split_sae_spec,
)

MODEL_FORMAT = "isaerft.hooked_transformer"
MODEL_FORMAT_VERSION = 1
MODEL_CONFIG_FILE = "isaerft_model.json"
MODEL_WEIGHTS_FILE = "model.safetensors"

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def dtype_from_name(name: str | torch.dtype) -> torch.dtype:
    """``"bfloat16"`` or ``"torch.bfloat16"`` -> ``torch.bfloat16``, with a clear error otherwise."""
    if isinstance(name, torch.dtype):
        return name
    key = name.removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _cfg_to_json(cfg: HookedTransformerConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if field.name in ("device", "n_devices", "tokenizer_prepends_bos"):
            continue
        if isinstance(value, torch.dtype):
            value = dtype_name(value)
        elif not isinstance(value, (int, float, str, bool, type(None), list, dict)):
            continue
        out[field.name] = value
    return out


def save_model(model: HookedTransformer, path: str | Path) -> Path:
    """Write ``model`` (and its tokenizer, if any) in the local model format, atomically per file."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(path))
    write_safetensors(path / MODEL_WEIGHTS_FILE, model.state_dict())
    # The config goes last: its presence marks a complete folder.
    write_json(
        path / MODEL_CONFIG_FILE,
        {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "cfg": _cfg_to_json(model.cfg),
        },
    )
    return path


def is_local_model(path: str | Path) -> bool:
    return (Path(path) / MODEL_CONFIG_FILE).is_file()


def _load_local_model(
    path: Path, device: str | None, dtype: torch.dtype | None
) -> HookedTransformer:
    meta = read_versioned_json(
        path / MODEL_CONFIG_FILE,
        kind=MODEL_FORMAT,
        version=MODEL_FORMAT_VERSION,
        what="an isaerft model config",
        fix="save the model again with isaerft.save_model",
    )
    cfg_dict = dict(meta["cfg"])
    cfg_dict["dtype"] = dtype or dtype_from_name(cfg_dict.get("dtype", "float32"))
    target_device = device or "cpu"
    cfg_dict["device"] = target_device
    cfg = HookedTransformerConfig(**cfg_dict)
    tokenizer = None
    if (path / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    state = read_safetensors(path / MODEL_WEIGHTS_FILE)
    model.load_state_dict({k: v.to(cfg.dtype) for k, v in state.items()}, strict=True)
    return model.to(target_device).eval()


@overload
def load_model(
    spec: str | Path,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    bridge: Literal[False] = False,
    **from_pretrained_kwargs: Any,
) -> HookedTransformer: ...


@overload
def load_model(
    spec: str | Path,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    bridge: Literal[True],
    hf_model: Any = None,
    tokenizer: Any = None,
    **boot_kwargs: Any,
) -> TransformerBridge: ...


@overload
def load_model(
    spec: str | Path,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    bridge: bool,
    **kwargs: Any,
) -> HookedTransformer | TransformerBridge: ...


def load_model(
    spec: str | Path,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    bridge: bool = False,
    hf_model: Any = None,
    tokenizer: Any = None,
    **from_pretrained_kwargs: Any,
) -> HookedTransformer | TransformerBridge:
    """Load a frozen-ready ``HookedTransformer``, or with ``bridge=True`` a ``TransformerBridge``.

    ``spec`` is a local folder in isaerft's model format (see :func:`save_model`), a local
    Hugging Face GPT-2 checkpoint folder (``config.json`` + ``model.safetensors``, e.g. the
    organism's, see :func:`isaerft.organism.hf.save_hf_model`), ``"organism:<preset>"`` (the offline model organism, built and cached on first use, as in
    recipes and on the command line) or a TransformerLens pretrained name such as
    ``"gemma-2-2b"`` (needs the Hugging Face hub).

    With ``bridge=True`` the model is ``TransformerBridge.boot_transformers(spec, ...)``:
    ``spec`` is a Hugging Face hub name such as ``"google/gemma-3-1b-pt"`` (needs the hub) or a
    local Hugging Face checkpoint folder of any architecture TransformerLens bridges. Pass
    ``hf_model=`` (a ``transformers`` model already in memory, moved to ``device``/``dtype``
    when given) and ``tokenizer=`` to bridge those instead; ``spec`` then only names the
    model. Further keywords go to ``boot_transformers`` (``hf_config_overrides``, ``n_ctx``,
    ``revision``, ...).
    """
    torch_dtype = dtype_from_name(dtype) if dtype is not None else None
    if bridge:
        return _load_bridge(spec, device, torch_dtype, hf_model, tokenizer, from_pretrained_kwargs)
    for key, value in (("hf_model", hf_model), ("tokenizer", tokenizer)):
        if value is not None:  # HookedTransformer.from_pretrained takes them too
            from_pretrained_kwargs[key] = value
    # ``organism:<preset>`` specs resolve through isaerft.specs, which imports the organism
    # package only then: users of hub models never need it.
    path = Path(resolve_model_spec(spec))
    if is_local_model(path):
        return _load_local_model(path, device, torch_dtype)
    if (path / "config.json").is_file():
        from isaerft.organism.hf import load_hf_model

        return load_hf_model(path, device=device or "cpu", dtype=torch_dtype or torch.float32)
    if path.exists():
        raise ValueError(
            f"{path} exists but holds no {MODEL_CONFIG_FILE}; save a model there with "
            "isaerft.save_model(model, path) or pass a TransformerLens model name"
        )
    kwargs: dict[str, Any] = dict(from_pretrained_kwargs)
    if device is not None:
        kwargs["device"] = device
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    try:
        return HookedTransformer.from_pretrained(str(spec), **kwargs)
    except OSError as err:
        raise OSError(
            f"could not load TransformerLens model {spec!r}: {err}. It must be downloaded from "
            "the Hugging Face hub; without network, pass a local folder written by isaerft.save_model"
        ) from err


def _load_bridge(
    spec: str | Path,
    device: str | None,
    dtype: torch.dtype | None,
    hf_model: Any,
    tokenizer: Any,
    boot_kwargs: dict[str, Any],
) -> TransformerBridge:
    kwargs: dict[str, Any] = dict(boot_kwargs)
    if tokenizer is not None:
        kwargs["tokenizer"] = _bridge_tokenizer(tokenizer)
    if hf_model is not None:
        # Used as it is by boot_transformers, which neither moves nor casts it.
        if device is not None or dtype is not None:
            hf_model.to(device=device, dtype=dtype)
        kwargs["hf_model"] = hf_model
        kwargs["dtype"] = next(hf_model.parameters()).dtype
        if not getattr(hf_model.config, "architectures", None):
            # A config built in memory (e.g. Gemma3TextConfig()) does not name its class.
            overrides = dict(kwargs.get("hf_config_overrides") or {})
            overrides.setdefault("architectures", [type(hf_model).__name__])
            kwargs["hf_config_overrides"] = overrides
        return TransformerBridge.boot_transformers(str(spec), **kwargs).eval()
    path = Path(spec)
    if organism_size(spec) is not None or is_local_model(path):
        raise ValueError(
            f"{spec} is a HookedTransformer in isaerft's format; a TransformerBridge needs a "
            "Hugging Face checkpoint (a folder with config.json, or a hub name): load this one "
            "without bridge=True, or write it as one with isaerft.organism.hf.save_hf_model"
        )
    kwargs["device"] = device or "cpu"
    kwargs["dtype"] = dtype or torch.float32
    if (path / "config.json").is_file():
        return TransformerBridge.boot_transformers(str(path), **kwargs).eval()
    if path.exists():
        raise ValueError(
            f"{path} exists but holds no config.json; a TransformerBridge loads a Hugging Face "
            "checkpoint folder (model.save_pretrained(path)) or a hub name"
        )
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise OSError(
            f"model {spec!r} must be downloaded from the Hugging Face hub but HF_HUB_OFFLINE=1; "
            "unset it, or pass a local Hugging Face checkpoint folder or hf_model="
        )
    try:
        return TransformerBridge.boot_transformers(str(spec), **kwargs).eval()
    except OSError as err:
        raise OSError(
            f"could not load {spec!r} as a TransformerBridge: {err}. It must be downloaded from "
            "the Hugging Face hub; without network, pass a local Hugging Face checkpoint folder "
            "or an in-memory model with hf_model="
        ) from err


def _bridge_tokenizer(tokenizer: Any) -> Any:
    """``tokenizer`` made acceptable to ``boot_transformers``.

    TransformerLens re-creates a tokenizer with ``add_bos_token=True`` from the folder it was
    loaded from (``init_kwargs["name_or_path"]``); one built in memory has no such folder, so
    it must already prepend BOS (``PreTrainedTokenizerFast(..., add_bos_token=True)``).
    """
    init_kwargs = getattr(tokenizer, "init_kwargs", None)
    if init_kwargs is None or "name_or_path" in init_kwargs:
        return tokenizer
    if not (init_kwargs.get("add_bos_token") or getattr(tokenizer, "add_bos_token", False)):
        raise ValueError(
            "this tokenizer was built in memory without add_bos_token=True; TransformerBridge "
            "needs one that prepends BOS: build it with add_bos_token=True, or save_pretrained "
            "it to a folder and load it from there"
        )
    init_kwargs["name_or_path"] = getattr(tokenizer, "name_or_path", "")
    return tokenizer


def load_sae(
    spec: str | Path,
    sae_id: str | None = None,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
) -> SAE[Any]:
    """Load an SAELens ``SAE``.

    ``spec`` is a SAELens directory (``cfg.json`` + ``sae_weights.safetensors``),
    ``"organism:<preset>"`` (the model organism's SAE), or a SAELens release with ``sae_id``
    (also accepted as one string ``"release::sae_id"``), e.g.
    ``load_sae("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")``.
    """
    path = Path(resolve_sae_spec(spec))
    if (path / "cfg.json").is_file():
        sae = SAE.load_from_disk(str(path), device=device)
    elif path.exists():
        raise ValueError(
            f"{path} exists but holds no SAELens cfg.json; save an SAE there with sae.save_model(path)"
        )
    else:
        release = str(spec)
        if sae_id is None:
            release, sae_id = split_sae_spec(release)
        if sae_id is None:
            raise ValueError(
                f"{spec!r} is neither a local SAELens folder nor a 'release{SAE_SPEC_SEPARATOR}sae_id' "
                "spec; pass sae_id= for a SAELens release"
            )
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        releases = get_pretrained_saes_directory()
        if release not in releases:
            raise ValueError(
                f"unknown SAELens release {release!r}; see sae_lens' pretrained_saes.yaml for the "
                "list, or pass a local SAELens folder"
            )
        if sae_id not in releases[release].saes_map:
            known = sorted(releases[release].saes_map)[:10]
            raise ValueError(
                f"release {release!r} has no sae_id {sae_id!r}; some valid ids: {known}"
            )
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise OSError(
                f"SAE {release}{SAE_SPEC_SEPARATOR}{sae_id} must be downloaded from the Hugging Face "
                "hub but HF_HUB_OFFLINE=1; unset it, or pass a local SAELens folder"
            )
        sae = SAE.from_pretrained(release, sae_id, device=device)
    if dtype is not None:
        sae = sae.to(dtype=dtype_from_name(dtype))
    return sae.eval()
