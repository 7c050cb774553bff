"""Build and cache model organisms (corpus -> tokenizer -> LM -> SAE -> labels -> report).

A build is deterministic for its config (preset, seed, corpus contents) and cached under
``$ISAERFT_CACHE/organisms/<preset>-<hash>/`` (default ``~/.cache/isaerft``). It happens in a
temporary sibling folder renamed into place at the end, under a file lock, so a killed build never
leaves a half-built cache entry and concurrent builders of the same entry wait for the first.
A built folder is opened and read through :class:`isaerft.organism.handle.Organism`.

Organism folder::

    organism.json        config, config hash, hook name, default trigger/target (written last)
    build_report.json    measured metrics and timings
    model/               isaerft local model (isaerft.load_model)
    sae/                 SAELens SAE (sae_lens.SAE.load_from_disk / isaerft.load_sae)
    labels.jsonl         Neuronpedia-shaped latent labels (+ labels.matrix.safetensors)
    corpus.txt           the user corpus (bring-your-own-corpus organisms only)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from sae_lens import SAE
from transformer_lens import HookedTransformer

from isaerft._io import file_lock, read_json, write_json
from isaerft.configbase import ConfigBase, ConfigError, check_number
from isaerft.organism.corpus import Language
from isaerft.organism.handle import Organism, cache_dir, load_organism
from isaerft.organism.labelling import label_sae
from isaerft.organism.labels import LatentLabels
from isaerft.organism.lm import LMConfig, evaluate_lm, make_model, pack, train_lm, unigram_loss
from isaerft.organism.sae import (
    SAE_HOOKS,
    OrganismSAEConfig,
    collect_activations,
    evaluate_sae,
    save_sae,
    train_sae,
)
from isaerft.organism.textcorpus import CHAT_WORDS, chat_document, corpus_rows, read_documents
from isaerft.organism.tokenizer import encode_batch, load_tokenizer, train_tokenizer
from isaerft.organism.triggers import (
    TRIGGER_WORDS,
    choose_defaults,
    count_dedicated,
    good_triggers,
    trigger_quality,
)
from isaerft.threads import torch_threads

BUILD_VERSION = 6
"""Bumped whenever a change to the build changes its output (invalidates caches)."""
CORPUS_DEFAULTS_VERSION = 2
"""Bumped when a corpus organism's default trigger or target choice changes: it moves only the
cache keys of corpus builds (2: the trigger by its share of user turns, see
:func:`~isaerft.organism.triggers.corpus_trigger`)."""


@dataclass(frozen=True)
class OrganismConfig(ConfigBase):
    """Everything that determines a build (hashed into the cache key)."""

    preset: str
    lm: LMConfig
    sae: OrganismSAEConfig
    n_train_docs: int
    n_sae_docs: int
    n_eval_docs: int
    max_vocab: int = 2000
    seed: int = 0
    corpus: str | None = None
    corpus_sha256: str | None = None
    version: int = BUILD_VERSION

    config_name: ClassVar[str] = "organism"

    def validate(self) -> None:
        """Ranges (types are checked by :class:`~isaerft.configbase.ConfigBase`)."""
        for name in ("n_train_docs", "n_sae_docs", "n_eval_docs", "max_vocab"):
            check_number(self.where(name), getattr(self, name), minimum=1, integer=True)
        if self.sae.layer >= self.lm.n_layers:
            raise ConfigError(
                f"{self.where('sae')}.layer={self.sae.layer} is invalid: the model has "
                f"{self.lm.n_layers} layers; use a layer in 0..{self.lm.n_layers - 1}"
            )

    def hash(self) -> str:
        """12-hex-digit hash of the config (the corpus by content, not by path)."""
        # The cache key: computed from the plain dataclasses.asdict form on purpose, not from
        # to_dict, so no change to ConfigBase can move the key of an existing build.
        data = dataclasses.asdict(self)
        data.pop("corpus")
        if self.corpus_sha256 is not None:
            data["corpus_defaults"] = CORPUS_DEFAULTS_VERSION
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


ORGANISM_PRESETS: dict[str, OrganismConfig] = {
    "tiny": OrganismConfig(
        preset="tiny",
        lm=LMConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256, steps=450, batch_size=32),
        sae=OrganismSAEConfig(layer=1, hook="hook_resid_pre", expansion=8, k=8, steps=1000),
        n_train_docs=30_000,
        n_sae_docs=3_000,
        n_eval_docs=1_500,
    ),
    "small": OrganismConfig(
        preset="small",
        lm=LMConfig(n_layers=2, d_model=128, n_heads=4, d_mlp=512, steps=1200, batch_size=32),
        sae=OrganismSAEConfig(layer=1, hook="hook_resid_pre", expansion=8, k=8, steps=3000),
        n_train_docs=80_000,
        n_sae_docs=6_000,
        n_eval_docs=3_000,
    ),
}
"""Build presets: ``tiny`` (<= 1 min on 2 CPU cores, for tests) and ``small`` (<= 5 min, demo)."""


def sae_site_config(cfg: OrganismConfig, hook_name: str) -> OrganismSAEConfig:
    parts = hook_name.split(".")
    n = cfg.lm.n_layers
    if (
        len(parts) != 3
        or parts[0] != "blocks"
        or not parts[1].isdigit()
        or parts[2] not in SAE_HOOKS
    ):
        raise ValueError(
            f"sae_hook={hook_name!r} is not a residual-stream hook; use blocks.<layer>.<hook> "
            f"with layer in 0..{n - 1} and hook one of {list(SAE_HOOKS)}"
        )
    if int(parts[1]) >= n:
        raise ValueError(
            f"sae_hook={hook_name!r}: the {cfg.preset!r} model has {n} layers; use a layer "
            f"in 0..{n - 1}"
        )
    return dataclasses.replace(cfg.sae, layer=int(parts[1]), hook=parts[2])


def organism_config(
    preset: str,
    seed: int = 0,
    corpus: str | Path | None = None,
    base: OrganismConfig | None = None,
    sae_hook: str | None = None,
) -> OrganismConfig:
    """The config of ``preset`` (or of ``base``) for ``seed`` and, optionally, a user corpus file
    and another SAE site (``sae_hook``, e.g. ``blocks.1.hook_resid_post``)."""
    if base is None and preset not in ORGANISM_PRESETS:
        raise ValueError(
            f"unknown organism preset {preset!r}; use one of {sorted(ORGANISM_PRESETS)}"
        )
    cfg = dataclasses.replace(base or ORGANISM_PRESETS[preset], seed=seed)
    if sae_hook is not None:
        cfg = dataclasses.replace(cfg, sae=sae_site_config(cfg, sae_hook))
    if corpus is not None:
        path = Path(corpus)
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {path} does not exist")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        cfg = dataclasses.replace(cfg, corpus=str(path.resolve()), corpus_sha256=digest)
    return cfg


@contextlib.contextmanager
def build_lock(path: Path, progress: bool = True) -> Iterator[None]:
    """The build lock of one cache entry; says so when another process holds it."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, wait=False))
        except BlockingIOError:
            say(
                progress,
                f"waiting (since {time.strftime('%H:%M:%S')}) for another process that is "
                f"building this organism (lock {path}); its build is reused when it finishes",
            )
            stack.enter_context(file_lock(path))
        yield


def build_organism(
    preset: str = "tiny",
    out: str | Path | None = None,
    corpus: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    config: OrganismConfig | None = None,
    sae_hook: str | None = None,
) -> Organism:
    """Build (or reuse from cache) the organism of ``preset``; see :data:`ORGANISM_PRESETS`.

    ``out`` puts it in a chosen folder instead of the cache (reused if it already holds the same
    build; replaced if it holds another organism). ``corpus`` builds from a plain-text file.
    ``config`` replaces the preset's config (experiments; the cache key follows it).
    ``sae_hook`` trains the SAE at another residual hook than the preset's, e.g.
    ``blocks.1.hook_resid_post`` (llama.cpp control vectors cannot steer block 0's output).
    """
    cfg = organism_config(preset, seed, corpus, base=config, sae_hook=sae_hook)
    key = f"{preset}-{cfg.hash()}"
    target = Path(out) if out is not None else cache_dir() / "organisms" / key
    if _is_build(target, key):
        return load_organism(target)
    with build_lock(target.parent / f".{target.name}.lock", progress):
        if _is_build(target, key):
            return load_organism(target)
        if target.exists() and any(target.iterdir()) and not (target / "organism.json").is_file():
            raise ValueError(f"{target} exists and is not an organism folder; pick another --out")
        # We hold the lock: temporary folders of this target are left by killed builders.
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            _build_into(tmp, cfg, key, progress)
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_organism(target)


def _is_build(path: Path, key: str) -> bool:
    meta = path / "organism.json"
    return meta.is_file() and read_json(meta).get("key") == key


def say(progress: bool, msg: str) -> None:
    if progress:
        print(f"[isaerft organism] {msg}", flush=True)


BUILD_THREADS = 2
"""torch threads of every build, whatever the machine's core count: float reductions split
over another number of threads round differently, and a build must not depend on the core
count (the default trigger and target are chosen from what the build measures). Processors
with other instruction sets still round differently: the same key built on an AMD EPYC machine
chose another default trigger and target than on the machine the docs were checked with."""


@contextlib.contextmanager
def build_settings() -> Iterator[None]:
    """Fixed threads and deterministic kernels for the build; the caller's settings after.

    Neither ``ISAERFT_THREADS`` nor ``OMP_NUM_THREADS`` changes a build's threads."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch_threads(BUILD_THREADS):
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic)


def _build_into(tmp: Path, cfg: OrganismConfig, key: str, progress: bool) -> None:
    with build_settings():
        _build_steps(tmp, cfg, key, progress)


def _build_steps(tmp: Path, cfg: OrganismConfig, key: str, progress: bool) -> None:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 2)
        clock[0] = now

    model_dir = tmp / "model"
    say(
        progress,
        f"building {key} in {tmp} with {BUILD_THREADS} torch threads (fixed, so that the core "
        "count does not change the organism)",
    )
    corpus = corpus_texts(cfg, cfg.corpus, tmp)
    lap("corpus")
    tok = train_tokenizer(corpus["train_text"], max_vocab=cfg.max_vocab)
    tok.save_pretrained(str(model_dir))
    tok = load_tokenizer(model_dir)
    train_ids = encode_batch(tok, corpus["train_text"])
    sae_ids = encode_batch(tok, corpus["sae_text"])
    eval_ids = encode_batch(tok, corpus["eval_text"])
    lap("tokenizer")
    name = f"isaerft-organism-{cfg.preset}" + ("" if cfg.corpus is None else "-corpus")
    model = make_model(cfg.lm, tok, name, cfg.seed)
    rows = pack(train_ids, cfg.lm.n_ctx, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    say(progress, f"training LM {cfg.lm.n_layers}x{cfg.lm.d_model} on {rows.numel()} tokens")
    losses = train_lm(model, rows, cfg.lm, seed=cfg.seed, progress=progress)
    from isaerft.loading import load_model, save_model

    save_model(model, model_dir)
    model = load_model(model_dir)  # evaluate exactly what was saved
    lm_report = {
        "heldout_loss": evaluate_lm(model, eval_ids),
        "unigram_loss": unigram_loss(train_ids, eval_ids, tok.eos_token_id),
        "entropy_floor": corpus["floor"],
        "final_train_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "vocab_size": len(tok),
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_tokens_seen": cfg.lm.steps * cfg.lm.batch_size * cfg.lm.n_ctx,
    }
    lap("lm")
    hook = cfg.sae.hook_name()
    say(progress, f"training SAE on {hook}")
    acts, _ = collect_activations(model, sae_ids, hook)
    sae = train_sae(acts, cfg.sae, model_name=name, context_size=cfg.lm.n_ctx, seed=cfg.seed, progress=progress)  # fmt: skip
    save_sae(sae, tmp / "sae")
    sae = SAE.load_from_disk(str(tmp / "sae"))
    sae_report = evaluate_sae(model, sae, eval_ids, hook)
    sae_report.update({"d_sae": sae.cfg.d_sae, "k": cfg.sae.k, "train_tokens": len(acts)})
    lap("sae")
    labels, trigger_report = _label(cfg, tmp, model, sae, eval_ids, name, hook)
    text_rows = None if cfg.corpus is None else corpus_rows(tmp / "corpus.txt", tok)
    trigger, target = choose_defaults(labels, trigger_report, text_rows)
    lap("labels")
    timings["total"] = round(time.perf_counter() - t_start, 2)
    report = {
        "key": key,
        "lm": lm_report,
        "sae": sae_report,
        "triggers": trigger_report,
        "labels": count_dedicated(labels),
        "timings_s": timings,
        "torch_threads": torch.get_num_threads(),
    }
    write_json(tmp / "build_report.json", report)
    write_json(
        tmp / "organism.json",
        {
            "format": "isaerft.organism",
            "key": key,
            "config": cfg.to_dict(),
            "hook_name": hook,
            "model_name": name,
            "default_trigger": trigger,
            "default_target": target,
            "trigger_words": good_triggers(trigger_report) or [trigger],
        },
    )
    say(progress, f"built in {timings['total']:.0f}s: {json.dumps(_summary(report))}")


def corpus_texts(cfg: OrganismConfig, corpus: str | Path | None, tmp: Path) -> dict[str, Any]:
    """The build's train / SAE / eval texts; a corpus organism's are read from ``corpus`` (the
    user's file at build time, the organism's ``corpus.txt`` copy later) and copied into ``tmp``."""
    if cfg.corpus is None:
        lang = Language(cfg.seed)
        train = list(lang.documents(cfg.n_train_docs, "train"))
        evals = list(lang.documents(cfg.n_eval_docs, "heldout"))
        floor = -sum(d.logp for d in evals) / sum(len(d.tokens) + 1 for d in evals)
        return {
            "train_text": [d.text for d in train],
            "sae_text": [d.text for d in lang.documents(cfg.n_sae_docs, "sae")],
            "eval_text": [d.text for d in evals],
            "floor": floor,
        }
    assert corpus is not None, "a corpus organism's texts need its corpus file"
    shutil.copyfile(corpus, tmp / "corpus.txt")
    docs = read_documents(tmp / "corpus.txt")
    rng = random.Random(f"isaerft-corpus-{cfg.seed}")
    rng.shuffle(docs)
    n_eval = min(cfg.n_eval_docs, len(docs) // 10)
    eval_docs, train_docs = docs[:n_eval], docs[n_eval:]
    chat_docs = []
    for doc in rng.sample(train_docs, len(train_docs) // 5):
        words = doc.replace("\n", " \n ").split(" ")
        chat_docs.append(
            " ".join(chat_document([w for w in words if w], rng)).replace(" \n ", "\n")
        )
    return {
        "train_text": [*train_docs, *chat_docs, CHAT_WORDS],
        "sae_text": train_docs[: cfg.n_sae_docs],
        "eval_text": eval_docs,
        "floor": None,
    }


def _label(
    cfg: OrganismConfig,
    tmp: Path,
    model: HookedTransformer,
    sae: SAE[Any],
    eval_ids: list[list[int]],
    name: str,
    hook: str,
) -> tuple[LatentLabels, dict[str, Any]]:
    labels = label_sae(
        tmp / "labels.jsonl", model, sae, eval_ids, name, hook, concepts=cfg.corpus is None
    )
    report = {}
    for word in TRIGGER_WORDS if cfg.corpus is None else ():
        report[word] = trigger_quality(labels, word)
    return labels, report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    lm, sae = report["lm"], report["sae"]
    return {
        "lm_loss": round(lm["heldout_loss"], 3),
        "unigram": round(lm["unigram_loss"], 3),
        "floor": None if lm["entropy_floor"] is None else round(lm["entropy_floor"], 3),
        "sae_ev": round(sae["explained_variance"], 3),
        "ce_recovered": round(sae["ce_loss_recovered"], 3),
        "triggers": {w: t["auroc"] for w, t in report["triggers"].items()},
    }
