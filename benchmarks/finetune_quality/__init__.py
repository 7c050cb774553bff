"""Fine-tuning through latents against LoRA, IA3, LoReFT, steering vectors and full fine-tuning.

Run from the repository root (offline, CPU)::

    python -m benchmarks.finetune_quality --quick            # tiny organism, 1 seed
    python -m benchmarks.finetune_quality --preset small     # full mode: 3 seeds, 300 steps

It writes ``benchmarks/results/finetune_quality-<preset>.json`` and, with ``--docs``,
regenerates ``docs/comparison.md`` and its plot from that file.
"""
