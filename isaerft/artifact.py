"""The saved intervention: ``isaerft_config.json`` + ``isaerft_weights.safetensors``, no pickle.

The config records, per site, the hook, ``d_sae`` and a fingerprint of the SAE's weights, so
loading onto any other SAE fails loudly instead of silently editing the wrong latents; and the
sha256 of the weights file, so weights from another save (or a half-finished one) never load.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from sae_lens import SAE
from safetensors.torch import load as load_safetensors_bytes

from isaerft._io import (
    file_lock,
    new_sibling_dir,
    read_versioned_json,
    replace_dir,
    sha256_file,
    write_json,
    write_safetensors,
)
from isaerft.backends import LanguageModel
from isaerft.config import ISaeRFTConfig
from isaerft.site import sae_architecture, sae_fingerprint

if TYPE_CHECKING:
    from isaerft.model import ISaeRFTModel

CONFIG_FILE = "isaerft_config.json"
WEIGHTS_FILE = "isaerft_weights.safetensors"
FORMAT = "isaerft.intervention"
FORMAT_VERSION = 1
WEIGHTS_HASH = "weights_sha256"
"""Config key holding the sha256 of the weights file saved with it."""


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
    """Write the intervention to the folder ``path`` as a whole.

    Both files are written into a new hidden sibling folder which then replaces ``path``, so a
    kill at any moment leaves the old artifact or the new one, never a mix. The config records
    the weights' sha256, so a folder whose files come from two saves fails to load.

    Raises:
        ValueError: ``path`` is a file, or a folder holding files other than a saved
            intervention.
    """
    from isaerft import __version__

    given = Path(path)
    path = given.absolute()  # a name to make siblings from, even for "."
    if path.is_symlink():  # replace the folder it points to, not the link
        path = path.resolve()
    check_may_overwrite(path)
    weights = {k: v.detach().cpu() for k, v in model.trainable_state_dict().items()}
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "isaerft_version": __version__,
        "base_model": model.model.cfg.model_name,
        "config": model.config.to_dict(),
        "sites": site_records(model),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Saves into one parent take turns, so the leftovers of killed saves can be swept safely.
    with file_lock(path.parent):
        for stale in (
            *path.parent.glob(f".{path.name}.*.saving"),
            *path.parent.glob(f".{path.name}.*.old"),
        ):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = new_sibling_dir(path, ".saving")
        try:
            write_safetensors(
                tmp / WEIGHTS_FILE,
                weights,
                metadata={"format": FORMAT, "isaerft_version": __version__},
            )
            write_json(tmp / CONFIG_FILE, {**record, WEIGHTS_HASH: sha256_file(tmp / WEIGHTS_FILE)})
            replace_dir(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return given


def check_may_overwrite(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is new, an empty folder or holds nothing but a saved
    intervention (a save replaces the whole folder, so any other file in it would be lost)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; save the intervention to a folder path")
    if not path.is_dir():
        return
    ours = (CONFIG_FILE, WEIGHTS_FILE)
    # Older saves wrote each file through a hidden ``.<name>.<random>.tmp`` sibling.
    foreign = sorted(
        p.name
        for p in path.iterdir()
        if p.name not in ours
        and not (p.name.startswith(tuple(f".{n}." for n in ours)) and p.name.endswith(".tmp"))
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"{path} holds files that are not a saved isaerft intervention ({shown}); save to "
            "a new or empty folder (isaerft never overwrites files it did not write)"
        )


def read_intervention_config(path: str | Path) -> dict[str, Any]:
    """The JSON config of a saved intervention, checked for format and version."""
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        # A save killed between its two renames leaves the previous artifact beside the path.
        left = sorted(path.parent.glob(f".{path.name}.*.old")) if not path.exists() else []
        hint = f"; a save was interrupted: its previous version is in {left[0]}" if left else ""
        raise FileNotFoundError(
            f"{config_path} not found; {path} is not a saved isaerft intervention "
            f"(write one with ISaeRFTModel.save_pretrained){hint}"
        )
    return read_versioned_json(
        config_path,
        kind=FORMAT,
        version=FORMAT_VERSION,
        what="a saved isaerft intervention config",
        fix="save it again",
    )


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


def read_intervention_weights(path: str | Path, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of the intervention folder ``path`` whose config is ``record``.

    Raises ``ValueError`` when the weights are not the ones the config was saved with (a mixed
    or edited folder), are not a readable safetensors file, or hold NaN/inf.
    """
    weights_path = Path(path) / WEIGHTS_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(
            f"{weights_path} not found; the intervention folder {path} is incomplete: save it again"
        )
    blob = weights_path.read_bytes()
    expected = record.get(WEIGHTS_HASH)
    # Artifacts from before the hash was recorded load unchecked.
    if expected is not None and hashlib.sha256(blob).hexdigest() != expected:
        raise ValueError(
            f"{weights_path} is not the weights file {Path(path) / CONFIG_FILE} was saved with "
            "(sha256 differs): the folder mixes two saves or was edited; save it again"
        )
    try:
        state = load_safetensors_bytes(blob)
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from err
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{weights_path} holds NaN or infinite values in {key!r}: the training diverged; "
                "train again (e.g. with a lower optim.lr or an optim.grad_clip)"
            )
    return {k: v.cpu() for k, v in state.items()}


def load_intervention(
    cls: type[ISaeRFTModel],
    model: LanguageModel,
    saes: SAE[Any] | Sequence[SAE[Any]],
    path: str | Path,
) -> ISaeRFTModel:
    record = read_intervention_config(path)
    sae_list = [saes] if isinstance(saes, SAE) else list(saes)
    check_saes_match(record, sae_list)
    config = ISaeRFTConfig.from_dict(record["config"])
    config.hook_names = [site["hook_name"] for site in record["sites"]]
    state = read_intervention_weights(path, record)
    wrapped = cls(model, sae_list, config)
    wrapped.load_trainable_state_dict(state)
    return wrapped
