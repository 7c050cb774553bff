"""Fine-tuning through latents against LoRA, IA3, LoReFT, steering vectors and full fine-tuning.

Run from the repository root (offline, CPU)::

    python -m benchmarks.finetune_quality --quick            # tiny organism, 1 seed
    python -m benchmarks.finetune_quality --preset small     # full mode: 3 seeds, 300 steps

The quick mode took 32 min on a shared, heavily loaded 2-core machine (load average 3-9); at
the lighter load near its end a method ran a task in 3-8 s, i.e. about 5-8 min for all 60
method x task runs on a quiet machine. The full mode (3 seeds, 300 steps, 512 training rows)
has not been run; from the quick run's step times it should take about 1.5-2 h on 2 cores.

It writes ``benchmarks/results/finetune_quality-<preset>.json`` and, with ``--docs``,
regenerates ``docs/comparison.md`` and its plot from that file.
"""
