"""Fine-tuning through latents against LoRA, IA3, LoReFT, steering vectors and full fine-tuning.

Run from the repository root (offline, CPU)::

    python -m benchmarks.finetune_quality --quick            # tiny organism, 3 seeds, 30 steps
    python -m benchmarks.finetune_quality                    # full mode: 300 steps, ~64 min

The quick mode (3 seeds, 30 steps, 96 training rows, 17 methods x 5 task/objective pairs, the
two extra site SAEs of the multisite rows trained once and cached) took 513 s (8.6 min) on a
quiet 2-core AMD EPYC machine, and 578 s on the Tiny Shakespeare organism. The full mode (3
seeds, 300 steps, 512 training rows, 128 held-out prompts) took 64 min for all five
task/objective pairs on the same machine (style 8, concept 9, sentiment 9, preference-DPO 14,
preference-RePS 24 min; measured in two runs, ``--tasks style concept`` then ``--tasks
sentiment preference``: a ``--tasks`` run adds its tasks to an existing result of the same
settings, listing each run under ``runs``).

The quick run writes ``benchmarks/results/finetune_quality-<preset>.json`` (the page's main
tables), a full-mode run ``finetune_quality-<preset>-full.json`` beside it (its own section on
the page); ``--docs`` regenerates ``docs/comparison.md`` and its plot from what is there.

On real text (an organism built from a text file, e.g. Tiny Shakespeare; it has no colour or
sentiment ground truth, so only the style and preference tasks run)::

    python -m benchmarks.finetune_quality --quick --corpus ../shared/corpora/tinyshakespeare.txt --docs

writes ``finetune_quality-<preset>-corpus.json`` next to the main result (an absent corpus file
is reported in one line, exit status 2) and regenerates the page from both results.
"""
