"""Differential training: start a run from another run's trained components.

``recipe.start_from`` names a finished run (or saved intervention), typically trained on
trusted data. The new run loads its components, anchors the sparsity penalty there
(:meth:`isaerft.ISaeRFTModel.set_anchor`) and trains on its own data, so its L1 counts only
what it adds on top of the start: the *delta* that this data teaches beyond the trusted fit.
``run.json`` records which start (by weights hash), so the audit can check that a candidate
and its references are deltas from the very same start before it compares them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isaerft.artifact import (
    WEIGHTS_HASH,
    check_saes_match,
    read_intervention_config,
    read_intervention_weights,
)
from isaerft.config import ISaeRFTConfig
from isaerft.model import ISaeRFTModel
from isaerft.runs import intervention_of


def start_from(model: ISaeRFTModel, path: str | Path) -> dict[str, Any]:
    """Load the trained components of ``path`` into ``model`` and anchor the L1 there.

    Returns the record ``run.json`` keeps (``{"path", "weights_sha256"}``). Refuses (one
    ``ValueError`` line) a start that trained another component kind, on other hooks or on
    other SAEs than ``model``; an unfinished run folder is refused by
    :func:`isaerft.runs.intervention_of`.
    """
    folder = intervention_of(path)
    record = read_intervention_config(folder)
    config = ISaeRFTConfig.from_dict(record["config"])
    hooks = [site["hook_name"] for site in record["sites"]]
    if config.component != model.config.component:
        raise ValueError(
            f"start_from={path} trained {config.component!r} components but this recipe trains "
            f"{model.config.component!r}; start from a run of the same component kind"
        )
    if sorted(hooks) != sorted(model.hook_names):
        raise ValueError(
            f"start_from={path} edits the hooks {sorted(hooks)} but this recipe edits "
            f"{sorted(model.hook_names)}; start from a run on the same hooks"
        )
    try:
        check_saes_match(record, [site.sae for site in model.sites])
    except ValueError as err:
        raise ValueError(f"start_from={path} does not fit this recipe's SAE: {err}") from None
    model.load_trainable_state_dict(read_intervention_weights(folder, record))
    model.set_anchor()
    return {"path": str(Path(path).resolve()), "weights_sha256": record.get(WEIGHTS_HASH)}
