"""The saved intervention: ``isaerft_config.json`` + ``isaerft_weights.safetensors``, no pickle.

The config records, per site, the hook, ``d_sae`` and a fingerprint of the SAE's weights, so
loading onto any other SAE fails loudly instead of silently editing the wrong latents.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sae_lens import SAE
from transformer_lens import HookedTransformer

from isaerft._io import read_json, read_safetensors, write_json, write_safetensors
from isaerft.config import ISaeRFTConfig
from isaerft.site import sae_architecture, sae_fingerprint

if TYPE_CHECKING:
    from isaerft.model import ISaeRFTModel

CONFIG_FILE = "isaerft_config.json"
WEIGHTS_FILE = "isaerft_weights.safetensors"
FORMAT = "isaerft.intervention"
FORMAT_VERSION = 1


def site_records(model: ISaeRFTModel) -> list[dict[str, Any]]:
    """What identifies each site's SAE: hook, sizes, architecture, fingerprint, Neuronpedia id."""
    records = []
    for site in model.sites:
        meta = site.sae.cfg.metadata
        records.append(
            {
                "hook_name": site.hook_name,
                "component": model.config.component,
                "d_sae": int(site.sae.cfg.d_sae),
                "d_in": int(site.sae.cfg.d_in),
                "architecture": sae_architecture(site.sae),
                "sae_fingerprint": sae_fingerprint(site.sae),
                "sae_model_name": meta.get("model_name"),
                "neuronpedia_id": meta.get("neuronpedia_id"),
            }
        )
    return records


def save_intervention(model: ISaeRFTModel, path: str | Path) -> Path:
    """Write the intervention to the folder ``path``; each file is replaced atomically."""
    from isaerft import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_safetensors(
        path / WEIGHTS_FILE,
        {k: v.cpu() for k, v in model.trainable_state_dict().items()},
        metadata={"format": FORMAT, "isaerft_version": __version__},
    )
    # The config is written last so a folder with a config always has matching weights.
    write_json(
        path / CONFIG_FILE,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "isaerft_version": __version__,
            "base_model": model.model.cfg.model_name,
            "config": model.config.to_dict(),
            "sites": site_records(model),
        },
    )
    return path


def read_intervention_config(path: str | Path) -> dict[str, Any]:
    """The JSON config of a saved intervention, checked for format and version."""
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found; {path} is not a saved isaerft intervention "
            "(write one with ISaeRFTModel.save_pretrained)"
        )
    record: dict[str, Any] = read_json(config_path)
    if record.get("format") != FORMAT:
        raise ValueError(f"{config_path} has format {record.get('format')!r}, expected {FORMAT!r}")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{config_path} uses format version {record['format_version']}, newer than this "
            f"isaerft reads ({FORMAT_VERSION}); upgrade isaerft"
        )
    return record


def check_saes_match(record: dict[str, Any], saes: Sequence[SAE[Any]]) -> None:
    """Raise ``ValueError`` unless every saved site has the very SAE it was trained with."""
    by_hook = {sae.cfg.metadata.hook_name: sae for sae in saes}
    for site in record["sites"]:
        hook = site["hook_name"]
        sae = by_hook.get(hook)
        if sae is None:
            raise ValueError(
                f"the intervention has a site at {hook!r} but no SAE given reads that hook "
                f"(SAE hooks: {sorted(h for h in by_hook if h)})"
            )
        if int(sae.cfg.d_sae) != site["d_sae"]:
            raise ValueError(
                f"SAE at {hook!r} has d_sae={sae.cfg.d_sae}, the intervention was trained on "
                f"d_sae={site['d_sae']}; load the SAE it was trained with"
            )
        fingerprint = sae_fingerprint(sae)
        if fingerprint != site["sae_fingerprint"]:
            raise ValueError(
                f"SAE at {hook!r} has fingerprint {fingerprint[:19]}..., the intervention was "
                f"trained on {site['sae_fingerprint'][:19]}...: a different SAE (or changed "
                "weights); load the SAE it was trained with"
            )


def load_intervention(
    cls: type[ISaeRFTModel],
    model: HookedTransformer,
    saes: SAE[Any] | Sequence[SAE[Any]],
    path: str | Path,
) -> ISaeRFTModel:
    record = read_intervention_config(path)
    sae_list = [saes] if isinstance(saes, SAE) else list(saes)
    check_saes_match(record, sae_list)
    config = ISaeRFTConfig.from_dict(record["config"])
    config.hook_names = [site["hook_name"] for site in record["sites"]]
    state = read_safetensors(Path(path) / WEIGHTS_FILE)
    wrapped = cls(model, sae_list, config)
    wrapped.load_trainable_state_dict(state)
    return wrapped
