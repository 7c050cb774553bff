"""The audit's forward passes on a CUDA device give what they give on the CPU, on the CPU.

Skipped without CUDA (CI has none); the GPU check runs them. Every reading the audit takes
from the model (codes, row and token gains, edit attribution, prompt swaps) must come back
as CPU tensors, since the rest of the audit combines them with CPU bookkeeping."""

from __future__ import annotations

import pytest
import torch
from audit.helpers import random_rows
from factories import edited_model

from isaerft import ISaeRFTModel
from isaerft.audit.activations import collect_codes
from isaerft.audit.attribution import latent_shares
from isaerft.audit.promptswap import completion_logprobs
from isaerft.audit.rowscores import only_latents, row_logprobs, token_excess_gain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

HOOK = "blocks.1.hook_resid_pre"


def _readings(model: ISaeRFTModel, reference: ISaeRFTModel) -> dict[str, torch.Tensor]:
    data = random_rows()
    codes = collect_codes(model, [s.sae for s in model.sites], data, edited=True)[HOOK]
    with only_latents(model, {HOOK: [1, 2, 3]}):
        kept = row_logprobs(model, data, base=False)
    per_token = torch.zeros(len(codes.token_row), dtype=torch.float64)
    return {
        "codes": per_token.index_add_(0, codes.tok, codes.val.double()),
        "logprobs": row_logprobs(model, data, base=False),
        "kept": kept,
        "token_gain": token_excess_gain(model, [reference], data),
        "shares": latent_shares(model, data, steps=4)[HOOK],
        "swapped": completion_logprobs(model, [(data.ids[0], 3), (data.ids[1], 2)], base=True),
    }


def test_audit_readings_on_cuda_match_the_cpu_and_come_back_on_the_cpu() -> None:
    model, reference = (
        edited_model("scale_bias", seed=1, hook_name=HOOK),
        edited_model("scale_bias", seed=2, hook_name=HOOK),
    )
    on_cpu = _readings(model, reference)
    on_cuda = _readings(model.to("cuda"), reference.to("cuda"))
    for name, value in on_cuda.items():
        assert value.device.type == "cpu", name
        torch.testing.assert_close(value, on_cpu[name], rtol=1e-3, atol=1e-4, msg=name)
