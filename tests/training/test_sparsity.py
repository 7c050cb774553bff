"""The proximal L1 update: exact soft-thresholds, Adam's metric, anchors, and end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from isaerft.configbase import ConfigError
from isaerft.training import TrainRecipe, train
from isaerft.training.sparsity import proximal_l1_


def sgd_step(values: list[float], grads: list[float], lr: float) -> tuple[Any, Any]:
    param = torch.nn.Parameter(torch.tensor(values))
    opt = torch.optim.SGD([param], lr=lr)
    param.grad = torch.tensor(grads)
    opt.step()
    return param, opt


def test_sgd_soft_thresholds_by_lr_times_coefficient() -> None:
    param, opt = sgd_step([0.5, -0.05, 0.02, -0.4], [0.0, 0.0, 0.0, 0.0], lr=0.1)
    proximal_l1_(opt, [(param, torch.zeros(4))], coefficient=1.0)
    assert param.tolist() == pytest.approx([0.4, 0.0, 0.0, -0.3])


def test_adam_threshold_is_in_adams_per_coordinate_metric() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([param], lr=0.1)
    param.grad = torch.tensor([-2.0, 0.5, 0.0])
    opt.step()  # the first Adam step moves each coordinate with a gradient by lr: 0.1
    after_step = param.detach().clone()
    proximal_l1_(opt, [(param, torch.zeros(3))], coefficient=1.0)
    # tau = lr * c / (|g| + eps): 0.05 for |g| = 2, 0.2 for |g| = 0.5 (which is removed).
    assert after_step.tolist() == pytest.approx([0.1, -0.1, 0.0])
    assert param.tolist() == pytest.approx([0.05, 0.0, 0.0], abs=1e-6)


def test_parameters_shrink_towards_their_centre() -> None:
    param, opt = sgd_step([1.0, 1.05], [0.0, 0.0], lr=0.1)
    proximal_l1_(opt, [(param, torch.ones(2))], coefficient=1.0)
    assert param.tolist() == pytest.approx([1.0, 1.0])


def test_zero_coefficient_and_untargeted_parameters_are_untouched() -> None:
    param, opt = sgd_step([0.05], [0.0], lr=0.1)
    proximal_l1_(opt, [(param, torch.zeros(1))], coefficient=0.0)
    proximal_l1_(opt, [], coefficient=1.0)
    assert param.tolist() == pytest.approx([0.05])


def recipe(tiny_setup: Any, **sections: Any) -> TrainRecipe:
    return TrainRecipe.from_dict(tiny_setup.recipe_dict(**sections))


@pytest.mark.parametrize(
    ("intervention", "optim", "message"),
    [
        ({"component": "mlp", "l1_coefficient": 1e-3}, {"l1_update": "proximal"}, "depends on"),
        ({"component": "scale", "l1_coefficient": 0.0}, {"l1_update": "proximal"}, "does nothing"),
        ({"component": "scale"}, {"l1_update": "exact"}, "l1_update"),
    ],
)
def test_recipe_refuses_a_proximal_update_it_cannot_apply(
    tiny_setup: Any, intervention: dict[str, Any], optim: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        recipe(tiny_setup, intervention=intervention, optim=optim)


def test_l1_targets_refuse_an_input_dependent_penalty(tiny_setup: Any) -> None:
    from isaerft import ISaeRFTConfig, ISaeRFTModel

    lm, sae = tiny_setup.load()
    model = ISaeRFTModel(lm, [sae], ISaeRFTConfig(component="mlp"))
    with pytest.raises(ValueError, match="input-dependent"):
        model.l1_targets()


def test_proximal_training_leaves_unmoved_latents_exactly_at_identity(
    tiny_setup: Any, tmp_path: Path
) -> None:
    def moved(update: str) -> tuple[int, int]:
        result = train(
            recipe(
                tiny_setup,
                intervention={"component": "scale_bias", "l1_coefficient": 0.02},
                optim={"lr": 0.05, "l1_update": update},
                trainer={"max_steps": 12},
            ),
            run_dir=tmp_path / update,
        )
        component = result.model.sites[0].component
        edits = torch.cat([e.detach().flatten() for e in component.edits().values()])
        return int((edits != 0).sum()), edits.numel()

    nonzero_gradient, total = moved("gradient")
    nonzero_proximal, _ = moved("proximal")
    # With the penalty as a loss term Adam moves every parameter the data touches; the
    # proximal update keeps most of them exactly at the identity but still learns some.
    assert nonzero_gradient >= 0.9 * total
    assert 0 < nonzero_proximal < nonzero_gradient / 2


def test_the_documented_recipe_fragment_is_a_valid_proximal_recipe(tiny_setup: Any) -> None:
    import yaml

    page = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text("utf-8")
    section = page.split("### Sparsity: exact zeros", 1)[1]
    fragment = yaml.safe_load(section.split("```yaml", 1)[1].split("```", 1)[0])
    built = recipe(tiny_setup, **fragment)
    assert built.optim.l1_update == "proximal" and built.intervention.component == "scale_bias"
