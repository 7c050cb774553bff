"""isaerft's benchmarks: one package per benchmark, each run from the repository root as a
module and writing its JSON result to ``benchmarks/results/``::

    python -m benchmarks.audit_poison --mode quick     # does the audit find planted poisons?
    python -m benchmarks.audit_v2 --mode quick         # what the candidate learns, what the audit sees
    python -m benchmarks.audit_learnability            # which poisons each component kind learns
    python -m benchmarks.step_time --shape cpu         # training-step time against the floor
    python -m benchmarks.threads                       # tokens/s at 1, 2 and default threads
    python -m benchmarks.finetune_quality --quick      # against LoRA, IA3, LoReFT, ... (docs/comparison.md)
    python -m benchmarks.interop_llama_cpp             # llama.cpp round trip (`make interop`)
    python -m benchmarks.docs                          # docs/benchmarks.md from the result files

Each package's ``run`` module (``finetune_quality``: its ``__init__``) says what it measures and
takes; :mod:`benchmarks.common` is what every result records.
"""
