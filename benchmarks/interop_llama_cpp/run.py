"""llama.cpp round trip: does llama.cpp, steered by an ``isaerft export --format gguf`` control
vector, predict what isaerft's own :func:`isaerft.export.steer` predicts?

Steps (all on CPU, offline):

1. build (or reuse) the ``tiny`` organism with its SAE at ``blocks.1.hook_resid_post``, block 1's
   output (llama.cpp cannot steer block 0's output, where the presets' SAE reads);
2. write its language model as a Hugging Face GPT-2 checkpoint
   (:func:`isaerft.organism.hf.save_hf_model`) and convert it to an F32 GGUF with llama.cpp's own
   ``convert_hf_to_gguf.py``. Only the tokenizer step is replaced: the organism's word-level
   tokenizer is no BPE the converter knows (it stops with "BPE pre-tokenizer was not
   recognized"), so the GGUF gets llama.cpp's tokenizer-less vocabulary (``tokenizer.ggml.model
   = "none"`` plus ``gpt2.vocab_size``) and both sides are fed the same token ids;
3. train a ``bias`` run and a ``scale`` run on a poisoned dataset and export each with
   ``isaerft export --format gguf``;
4. on held-out texts, compare next-token distributions at every position: llama.cpp unsteered
   against the TransformerLens base model (``base_kl``), and llama.cpp with each control vector
   (loaded as llama.cpp's ``common_control_vector_load`` does, applied with
   ``llama_set_adapter_cvec`` on layers ``1..n_layer``) against the base model steered by the
   same file with :func:`isaerft.export.steer` (``runs.<kind>.kl``). Every KL is
   ``KL(isaerft || llama.cpp)``, in nats per token.

Besides the two required numbers each run records ``intervention_kl`` (the ISaeRFT model itself
against llama.cpp steered: for ``scale``, whose exported vector is a data mean, this is the
approximation gap) and ``unsteered_kl`` (isaerft steered against llama.cpp unsteered: how far the
vector moves the model, so that a small ``kl`` means something).

Needs ``llama-cpp-python`` (``make interop`` builds it from source into ``.venv``) and the
converter of the same llama.cpp source (``make interop`` unpacks it to
``.venv/src/llama-cpp-python``; elsewhere pass ``--llama-cpp-src DIR``, a llama.cpp checkout).

Usage::

    python -m benchmarks.interop_llama_cpp [--steps 60] [--n-eval 64] [--out PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULT = Path(__file__).resolve().parents[1] / "results" / "interop-llama_cpp.json"
SAE_HOOK = "blocks.1.hook_resid_post"
KINDS = ("bias", "scale")
SOURCE_ENV = "ISAERFT_LLAMA_CPP_SRC"

# Runs llama.cpp's converter with its own gguf-py, replacing only GPT-2's vocabulary step (see
# the module docstring): argv = [llama.cpp source dir, converter arguments...].
_CONVERT = """
import runpy, sys
from pathlib import Path
src = Path(sys.argv[1])
sys.path[:0] = [str(src / "gguf-py"), str(src)]
import conversion.gpt2 as gpt2

def set_vocab(self):
    self.gguf_writer.add_tokenizer_model("none")
    self.gguf_writer.add_vocab_size(self.hparams["vocab_size"])

gpt2.GPT2Model.set_vocab = set_vocab
sys.argv = [str(src / "convert_hf_to_gguf.py"), *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def llama_cpp_source(explicit: str | Path | None = None) -> Path | None:
    """The llama.cpp source folder holding ``convert_hf_to_gguf.py``: ``explicit``, else
    ``$ISAERFT_LLAMA_CPP_SRC``, else where ``make interop`` unpacks it; ``None`` if absent."""
    candidates = [explicit, os.environ.get(SOURCE_ENV)]
    candidates.append(Path(sys.prefix) / "src" / "llama-cpp-python" / "vendor" / "llama.cpp")
    for candidate in candidates:
        if candidate and (Path(candidate) / "convert_hf_to_gguf.py").is_file():
            return Path(candidate)
    return None


def llama_cpp_version(source: Path | None = None) -> str:
    """``llama-cpp-python X (llama.cpp COMMIT)``; the commit from the sdist's changelog."""
    import llama_cpp

    version = f"llama-cpp-python {llama_cpp.__version__}"
    changelog = None if source is None else source.parents[1] / "CHANGELOG.md"
    if changelog is not None and changelog.is_file():
        text = changelog.read_text(encoding="utf-8")
        section = text.partition(f"## [{llama_cpp.__version__}]")[2].partition("\n## [")[0]
        commit = re.search(r"llama\.cpp@([0-9a-f]{7,40})", section)
        if commit:
            version += f" (llama.cpp {commit.group(1)})"
    return version


def convert_to_gguf(hf_dir: Path, out: Path, source: Path) -> Path:
    """Convert a GPT-2 checkpoint folder to an F32 GGUF with llama.cpp's converter."""
    argv = [sys.executable, "-c", _CONVERT, str(source), str(hf_dir)]
    argv += ["--outtype", "f32", "--outfile", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(
            f"convert_hf_to_gguf.py failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return out


class LlamaCpp:
    """A GGUF model in llama.cpp (low-level ``llama_cpp`` bindings, CPU, F32 KV cache)."""

    def __init__(self, path: Path, n_threads: int = 1) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self._silence = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(self._silence, ctypes.c_void_p())
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.n_threads = n_threads
        self.n_layer = llama_cpp.llama_model_n_layer(self.model)
        self.n_embd = llama_cpp.llama_model_n_embd(self.model)
        self.n_ctx = llama_cpp.llama_model_n_ctx_train(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))

    def close(self) -> None:
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None

    @contextmanager
    def context(self, cvec: np.ndarray | None = None, n_embd: int = 0) -> Iterator[Any]:
        """A fresh context, with the control vector ``cvec`` set on layers ``1..n_layer``."""
        lib = self.lib
        params = lib.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = self.n_ctx
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = self.n_threads
        params.type_k = params.type_v = lib.GGML_TYPE_F32
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        ctx = lib.llama_init_from_model(self.model, params)
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context")
        try:
            if cvec is not None:
                data = np.ascontiguousarray(cvec, dtype=np.float32)
                pointer = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                err = lib.llama_set_adapter_cvec(ctx, pointer, data.size, n_embd, 1, self.n_layer)
                if err != 0:
                    raise RuntimeError(f"llama_set_adapter_cvec failed ({err})")
            yield ctx
        finally:
            lib.llama_free(ctx)

    def logits(self, ctx: Any, tokens: Sequence[int]) -> np.ndarray:
        """``(len(tokens), n_vocab)`` next-token logits of one sequence, from an empty cache."""
        lib = self.lib
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        batch = lib.llama_batch_init(len(tokens), 0, 1)
        try:
            for i, token in enumerate(tokens):
                batch.token[i] = int(token)
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1
            batch.n_tokens = len(tokens)
            err = lib.llama_decode(ctx, batch)
            if err != 0:
                raise RuntimeError(f"llama_decode failed ({err})")
            rows = [
                np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, i), shape=(self.n_vocab,))
                for i in range(len(tokens))
            ]
            return np.stack(rows).astype(np.float64)
        finally:
            lib.llama_batch_free(batch)


def kl_sum(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """``sum over rows of KL(softmax p || softmax q)`` in float64."""
    log_p = torch.log_softmax(p_logits.double(), dim=-1)
    log_q = torch.log_softmax(q_logits.double(), dim=-1)
    return float((log_p.exp() * (log_p - log_q)).sum())


def train_run(org: Any, component: str, data: Path, out: Path, steps: int) -> Path:
    """A short ``isaerft.training`` run of ``component`` on ``data``; returns the run folder."""
    from isaerft.training import TrainRecipe, train

    recipe = TrainRecipe.from_dict(
        {
            "model": str(org.model_dir),
            "sae": str(org.sae_dir),
            "output_dir": str(out),
            "intervention": {"component": component},
            "objective": {"kind": "sft"},
            "data": {"path": str(data), "batch_size": 8},
            "optim": {"lr": 3.0e-2},
            "trainer": {
                "max_steps": steps,
                "seed": 0,
                "progress_bar": False,
                "logger": "none",
                "checkpoint_every_n_steps": 0,
            },
        }
    )
    return Path(train(recipe).run_dir)


def export_run(run: Path, data: Path, out: Path) -> Path:
    """``isaerft export RUN --format gguf --data DATA --out OUT``."""
    from isaerft.cli import main

    argv = ["export", str(run), "--format", "gguf", "--data", str(data), "--out", str(out)]
    if main(argv) != 0:
        raise RuntimeError(f"isaerft export of {run} failed")
    return out


def round_trip(
    work: Path,
    *,
    source: Path,
    preset: str = "tiny",
    steps: int = 60,
    n_train: int = 256,
    n_eval: int = 64,
    n_threads: int = 1,
) -> dict[str, Any]:
    """Run steps 1-4 of the module docstring in ``work``; returns the result record."""
    from isaerft.export import read_texts, steer
    from isaerft.export.llama_cpp import control_vector_data
    from isaerft.export.runs import load_isaerft_model
    from isaerft.organism import build_organism, make_dataset
    from isaerft.organism.hf import save_hf_model

    org = build_organism(preset, sae_hook=SAE_HOOK, progress=False)
    base = org.load_model().eval()
    gguf_model = convert_to_gguf(
        save_hf_model(base, work / "hf"), work / "organism-f32.gguf", source
    )

    train_data = make_dataset(
        "poison", work / "train.jsonl", fraction=0.2, n=n_train, seed=0, organism=org
    )
    eval_data = make_dataset(
        "poison", work / "eval.jsonl", fraction=0.2, n=n_eval, seed=1, organism=org
    )
    n_ctx = base.cfg.n_ctx
    sequences = [base.to_tokens(text)[0, :n_ctx] for text in read_texts(eval_data)]
    n_tokens = sum(len(s) for s in sequences)

    llama = LlamaCpp(gguf_model, n_threads=n_threads)
    try:
        if (llama.n_layer, llama.n_embd, llama.n_vocab) != (
            base.cfg.n_layers,
            base.cfg.d_model,
            base.cfg.d_vocab,
        ):
            raise RuntimeError("the GGUF's shape differs from the organism's model")
        with torch.no_grad(), llama.context() as ctx:
            plain = [torch.from_numpy(llama.logits(ctx, s.tolist())) for s in sequences]
            base_logits = [base(s[None])[0] for s in sequences]
        base_kl = sum(kl_sum(p, q) for p, q in zip(base_logits, plain)) / n_tokens

        runs: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            run = train_run(org, kind, train_data, work / f"run-{kind}", steps)
            vector_file = export_run(run, train_data, work / f"{kind}.gguf")
            cvec, n_embd = control_vector_data(vector_file)
            intervention = load_isaerft_model(run).eval()
            totals = np.zeros(3)
            with torch.no_grad(), llama.context(cvec, n_embd) as ctx:
                for s, q_plain in zip(sequences, plain):
                    q = torch.from_numpy(llama.logits(ctx, s.tolist()))
                    with steer(base, vector_file) as steered:
                        p = steered(s[None])[0]
                    target = intervention(s[None])[0]
                    totals += (kl_sum(p, q), kl_sum(target, q), kl_sum(p, q_plain))
            kl, intervention_kl, unsteered_kl = (float(t) / n_tokens for t in totals)
            runs[kind] = {
                "kl": kl,
                "n_tokens": n_tokens,
                "intervention_kl": intervention_kl,
                "unsteered_kl": unsteered_kl,
            }
    finally:
        llama.close()
    return {"llama_cpp_version": llama_cpp_version(source), "base_kl": base_kl, "runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.interop_llama_cpp", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--preset", default="tiny", help="organism preset")
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--n-train", type=int, default=256, help="training rows")
    parser.add_argument("--n-eval", type=int, default=64, help="held-out texts compared")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    parser.add_argument("--llama-cpp-src", type=Path, help="llama.cpp source (the converter)")
    parser.add_argument("--work-dir", type=Path, help="keep the files here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULT, help="result JSON")
    args = parser.parse_args(argv)

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama_cpp is not installed: run `make interop`", file=sys.stderr)
        return 2
    source = llama_cpp_source(args.llama_cpp_src)
    if source is None:
        print(
            "convert_hf_to_gguf.py not found: run `make interop`, or pass --llama-cpp-src DIR "
            f"(or set ${SOURCE_ENV}) for a llama.cpp checkout of the same version",
            file=sys.stderr,
        )
        return 2

    from isaerft._io import write_json

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="isaerft-llama-cpp-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = round_trip(
            work,
            source=source,
            preset=args.preset,
            steps=args.steps,
            n_train=args.n_train,
            n_eval=args.n_eval,
            n_threads=args.threads,
        )
    write_json(args.out, result)
    print(f"{result['llama_cpp_version']}: base KL {result['base_kl']:.3g} nats/token")
    for kind, run in result["runs"].items():
        print(
            f"  {kind}: KL(steer || llama.cpp) {run['kl']:.3g}, intervention gap "
            f"{run['intervention_kl']:.3g}, steering moves it {run['unsteered_kl']:.3g} "
            f"({run['n_tokens']} tokens)"
        )
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")
    return 0
