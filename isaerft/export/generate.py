"""Base, ISaeRFT and vector-steered continuations of one prompt, sampled with the same seed."""

from __future__ import annotations

from collections.abc import Callable

import torch

from isaerft.backends import LanguageModel, generation_kwargs
from isaerft.export.steering import VectorsLike, steer
from isaerft.model import ISaeRFTModel


def compare_generations(
    model: ISaeRFTModel,
    prompt: str,
    *,
    vectors: VectorsLike | None = None,
    multiplier: float = 1.0,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
) -> dict[str, str]:
    """Continue ``prompt`` three ways and return ``{"base", "isaerft", "steered"}`` texts.

    ``"steered"`` is the base model with ``multiplier * vectors`` added (left out when
    ``vectors`` is None). ``temperature == 0`` decodes greedily; otherwise every variant
    samples from the same ``seed``, so differences come from the model, not the dice.
    """
    if model.model.tokenizer is None:
        raise ValueError("the model has no tokenizer, so it cannot continue a text prompt")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0")
    hooked = model.model
    tokens = hooked.to_tokens(prompt)
    variants: dict[str, Callable[[], torch.Tensor]] = {
        "base": lambda: _generate(hooked, tokens, max_new_tokens, temperature),
        "isaerft": lambda: _generate_spliced(model, tokens, max_new_tokens, temperature),
    }
    if vectors is not None:
        steering = vectors

        def steered() -> torch.Tensor:
            with steer(hooked, steering, multiplier=multiplier):
                return _generate(hooked, tokens, max_new_tokens, temperature)

        variants["steered"] = steered
    out = {}
    for name, run in variants.items():
        torch.manual_seed(seed)
        new = run()[0, tokens.shape[1] :]
        out[name] = _decode_until_eos(hooked, new)
    return out


def _generate(
    hooked: LanguageModel | ISaeRFTModel,
    tokens: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
) -> torch.Tensor:
    kwargs = {
        "max_new_tokens": max_new_tokens,
        "do_sample": temperature > 0,
        "temperature": temperature if temperature > 0 else 1.0,
        "verbose": False,
    }
    # An ISaeRFTModel applies this itself, before splicing (see isaerft.backends).
    out = hooked.generate(tokens, **generation_kwargs(hooked, kwargs))
    assert isinstance(out, torch.Tensor)
    return out


def _generate_spliced(
    model: ISaeRFTModel, tokens: torch.Tensor, max_new_tokens: int, temperature: float
) -> torch.Tensor:
    return _generate(model, tokens, max_new_tokens, temperature)


def _decode_until_eos(hooked: LanguageModel, new: torch.Tensor) -> str:
    eos = getattr(hooked.tokenizer, "eos_token_id", None)
    if eos is not None:
        stops = (new == eos).nonzero()
        if len(stops):
            new = new[: int(stops[0])]
    return str(hooked.to_string(new))
