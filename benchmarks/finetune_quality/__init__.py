"""Fine-tuning through latents against LoRA, IA3, LoReFT, steering vectors and full fine-tuning.

Run from the repository root (offline, CPU)::

    python -m benchmarks.finetune_quality --quick            # tiny organism, 3 seeds
    python -m benchmarks.finetune_quality --preset small     # full mode: 3 seeds, 300 steps

The quick mode (3 seeds, 30 steps, 96 training rows, 17 methods x 5 task/objective pairs, the
two extra site SAEs of the multisite rows trained once and cached) took 735 s (12.3 min) on a
quiet 2-core machine. The full mode (3 seeds, 300 steps, 512 training rows) has not been run;
from the quick run's step times it should take about 2-3 h on 2 cores.

It writes ``benchmarks/results/finetune_quality-<preset>.json`` and, with ``--docs``,
regenerates ``docs/comparison.md`` and its plot from that file.

On real text (an organism built from a text file, e.g. Tiny Shakespeare; it has no colour or
sentiment ground truth, so only the style and preference tasks run)::

    python -m benchmarks.finetune_quality --quick --corpus ../shared/corpora/tinyshakespeare.txt --docs

writes ``finetune_quality-<preset>-corpus.json`` next to the main result (an absent corpus file
is reported in one line, exit status 2) and regenerates the page from both results.
"""
