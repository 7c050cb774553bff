"""save_pretrained / from_pretrained: round trip, JSON + safetensors only, mismatch rejection."""

from __future__ import annotations

import json
import os

import pytest
import torch
from factories import ARCHITECTURES, tiny_model, tiny_sae
from safetensors.torch import load_file

from isaerft import ISaeRFTConfig, ISaeRFTModel, component_kinds, read_intervention_config
from isaerft.artifact import CONFIG_FILE, WEIGHTS_FILE

TOKENS = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(3))


def _trained(
    kind: str, arch: str = "standard", hooks=("blocks.1.hook_resid_post",)
) -> ISaeRFTModel:
    saes = [tiny_sae(arch, hook_name=h, seed=i) for i, h in enumerate(hooks)]
    wrapped = ISaeRFTModel(tiny_model(), saes, ISaeRFTConfig(component=kind))
    with torch.no_grad():
        for p in wrapped.trainable_parameters():
            p.add_(torch.randn(p.shape) * 0.2)
    return wrapped


@pytest.mark.parametrize("kind", sorted(component_kinds()))
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_round_trip_gives_equal_logits(kind, arch, tmp_path):
    wrapped = _trained(kind, arch)
    expected = wrapped(TOKENS)
    wrapped.save_pretrained(tmp_path)
    reloaded = ISaeRFTModel.from_pretrained(tiny_model(), [wrapped.sites[0].sae], tmp_path)
    assert torch.equal(reloaded(TOKENS), expected)


def test_files_are_json_and_safetensors_with_provenance(tmp_path):
    wrapped = _trained("scale_bias", hooks=("blocks.1.hook_resid_post", "blocks.2.hook_resid_pre"))
    wrapped.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    record = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert record["isaerft_version"]
    assert record["config"]["component"] == "scale_bias"
    site = record["sites"][0]
    assert site["hook_name"] == "blocks.1.hook_resid_post"
    assert site["d_sae"] == 128 and site["sae_fingerprint"].startswith("sha256:")
    weights = load_file(str(tmp_path / WEIGHTS_FILE))
    assert set(weights) == set(wrapped.trainable_state_dict())
    assert read_intervention_config(tmp_path)["sites"][1]["hook_name"] == "blocks.2.hook_resid_pre"


def test_no_pickle_anywhere(tmp_path):
    _trained("mlp").save_pretrained(tmp_path)
    for path in tmp_path.iterdir():
        assert b"\x80\x04" not in path.read_bytes()[:2]  # pickle protocol header


def test_save_overwrites_atomically_without_temp_leftovers(tmp_path):
    wrapped = _trained("scale")
    wrapped.save_pretrained(tmp_path)
    wrapped.save_pretrained(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_other_sae_is_rejected_by_fingerprint(tmp_path):
    _trained("scale").save_pretrained(tmp_path)
    other = tiny_sae("standard", seed=7)
    model = tiny_model()
    with pytest.raises(ValueError, match="fingerprint"):
        ISaeRFTModel.from_pretrained(model, [other], tmp_path)
    assert all(p.requires_grad for p in model.parameters())


def test_other_width_is_rejected(tmp_path):
    _trained("scale").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="d_sae=64"):
        ISaeRFTModel.from_pretrained(tiny_model(), [tiny_sae(d_sae=64)], tmp_path)


def test_other_hook_is_rejected(tmp_path):
    _trained("scale").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no SAE given reads that hook"):
        ISaeRFTModel.from_pretrained(
            tiny_model(), [tiny_sae(hook_name="blocks.0.hook_resid_post")], tmp_path
        )


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved isaerft intervention"):
        ISaeRFTModel.from_pretrained(tiny_model(), [tiny_sae()], tmp_path / "nope")


def test_newer_format_is_refused(tmp_path):
    _trained("scale").save_pretrained(tmp_path)
    record = json.loads((tmp_path / CONFIG_FILE).read_text())
    record["format_version"] = 99
    (tmp_path / CONFIG_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="upgrade isaerft"):
        read_intervention_config(tmp_path)


def test_written_files_get_the_usual_permissions(tmp_path):
    from isaerft._io import write_text

    path = write_text(tmp_path / "report.md", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def _two_different() -> tuple[ISaeRFTModel, ISaeRFTModel]:
    first, second = _trained("scale"), _trained("scale")
    with torch.no_grad():
        _weights(second).add_(1.0)
    return first, second


def _weights(model: ISaeRFTModel) -> torch.Tensor:
    return next(iter(model.trainable_parameters()))


def test_mixed_folder_from_two_saves_is_refused(tmp_path):
    """A kill between writing the two files of a save once gave a loadable mixed folder."""
    first, second = _two_different()
    first.save_pretrained(tmp_path / "a")
    second.save_pretrained(tmp_path / "b")
    (tmp_path / "b" / CONFIG_FILE).replace(tmp_path / "a" / CONFIG_FILE)
    with pytest.raises(ValueError, match="mixes two saves"):
        ISaeRFTModel.from_pretrained(tiny_model(), [first.sites[0].sae], tmp_path / "a")


def test_truncated_weights_are_refused_naming_the_file(tmp_path):
    wrapped = _trained("scale")
    wrapped.save_pretrained(tmp_path)
    record = json.loads((tmp_path / CONFIG_FILE).read_text())
    del record["weights_sha256"]  # as written by an older isaerft: no hash to check
    (tmp_path / CONFIG_FILE).write_text(json.dumps(record))
    weights = tmp_path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{WEIGHTS_FILE} is not a readable safetensors file"):
        ISaeRFTModel.from_pretrained(tiny_model(), [wrapped.sites[0].sae], tmp_path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(bad, tmp_path):
    wrapped = _trained("scale")
    with torch.no_grad():
        _weights(wrapped)[3] = bad
    wrapped.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"{WEIGHTS_FILE} holds NaN or infinite values"):
        ISaeRFTModel.from_pretrained(tiny_model(), [wrapped.sites[0].sae], tmp_path)


def test_a_folder_with_other_files_is_never_overwritten(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a saved isaerft intervention"):
        _trained("scale").save_pretrained(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]

    # Nor a saved intervention someone put their own file beside: a save replaces the folder.
    _trained("scale").save_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / "README.md").write_text("mine")
    with pytest.raises(ValueError, match=r"not a saved isaerft intervention \(README.md\)"):
        _trained("scale").save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "README.md").read_text() == "mine"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ValueError, match="is a file"):
        _trained("scale").save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"


def test_resave_replaces_the_whole_folder(tmp_path):
    first, second = _two_different()
    first.save_pretrained(tmp_path / "a")
    second.save_pretrained(tmp_path / "a")
    reloaded = ISaeRFTModel.from_pretrained(tiny_model(), [second.sites[0].sae], tmp_path / "a")
    assert torch.equal(_weights(reloaded), _weights(second))
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no .saving / .old leftovers


def test_a_killed_save_never_leaves_a_mixed_folder(tmp_path):
    """Kill a save at every file-system step: the folder loads as the old or the new save,
    or is missing; the next save sweeps the leftovers."""
    first, second = _two_different()
    target = tmp_path / "a"
    first.save_pretrained(target)
    steps = _count_fs_steps(lambda: second.save_pretrained(target))
    for kill_at in range(steps):
        first.save_pretrained(target)
        with pytest.raises(_Killed):
            _with_fs_steps_limited(kill_at, lambda: second.save_pretrained(target))
        if target.exists():
            loaded = ISaeRFTModel.from_pretrained(tiny_model(), [first.sites[0].sae], target)
            assert any(torch.equal(_weights(loaded), _weights(m)) for m in (first, second))
        else:
            with pytest.raises(FileNotFoundError, match="its previous version is in"):
                read_intervention_config(target)
    second.save_pretrained(target)
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs (not even ``except Exception``)."""


_FS_STEPS = ("replace", "rename", "mkdir", "chmod")


def _count_fs_steps(save) -> int:  # type: ignore[no-untyped-def]
    calls = []
    originals = {name: getattr(os, name) for name in _FS_STEPS}

    def counting(name):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            return originals[name](*args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as mp:
        for name in _FS_STEPS:
            mp.setattr(os, name, counting(name))
        save()
    return len(calls)


def _with_fs_steps_limited(limit: int, save) -> None:  # type: ignore[no-untyped-def]
    """Run ``save`` but die (leaving everything as it is) at file-system step ``limit``."""
    seen = [0]
    originals = {name: getattr(os, name) for name in _FS_STEPS}

    def limited(name):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            if seen[0] == limit:
                raise _Killed
            seen[0] += 1
            return originals[name](*args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as mp:
        for name in _FS_STEPS:
            mp.setattr(os, name, limited(name))
        mp.setattr("shutil.rmtree", lambda *a, **k: None)  # a kill runs no cleanup
        save()
