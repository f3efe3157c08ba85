"""Benchmarks: every figure is a ratio of two measurements taken in the same run.

    python -m biojax.bench --out=DIR [--full] [--tiny] [--config=experiments/quickstart.py]

Writes ``bench.json`` and ``bench.md`` in DIR. Each timing is the median of several repeats,
after a warm-up call that compiles; programs being compared are measured interleaved
(round-robin), so slow drift of the machine affects them alike. One module per section
(docs/performance.md):

1. :mod:`~biojax.bench.rule_overhead`: train-step time of each rule relative to ``bp`` (MLP,
   ConvNet, NAS-Bench-201 network).
2. :mod:`~biojax.bench.compilations` (``compilations``): XLA compilations while a search
   evaluates at least 64 distinct NAS-Bench-201 genomes through one
   :class:`biojax.nas.PopulationEvaluator`.
3. :mod:`~biojax.bench.compilations` (``search_throughput``): candidates per minute of the
   population evaluator against a sequential loop that compiles one program per candidate,
   its genome baked in as Python constants (what a user writes without biojax), at the
   quickstart budget.
4. :mod:`~biojax.bench.against_the_machine`: achieved FLOP/s of the MLP train step over the
   FLOP/s of a dense matrix product on the same machine.
5. :mod:`~biojax.bench.strategies`: per-candidate time of ``vmap``, ``map`` and ``chunked``
   relative to a single-candidate program, for the MLP and the NAS-Bench-201 network; one
   convolution alone and inside loops.
6. :mod:`~biojax.bench.memory`: memory of the evaluator program for 16 NAS-Bench-201 proxy
   candidates.

:mod:`~biojax.bench.timing` holds the machine description and the interleaved timer,
:mod:`~biojax.bench.workloads` the NAS workloads, :mod:`~biojax.bench.suite` runs every
section (:func:`run`), :mod:`~biojax.bench.report` writes ``bench.md`` (:func:`to_markdown`)
and ``__main__`` holds the flags. The NAS sections use the search settings of the config
file given by ``--config`` (default experiments/quickstart.py, loaded as ``biojax.main`` loads
configs; every field can be overridden, ``--config.proxy.steps=...``) on synthetic data of
its shapes (cost does not depend on pixel values). ``--tiny`` replaces the NAS-Bench-201
network by a small MLP with one rule gene per layer (:class:`biojax.nas.LayerRuleSpace`), so
the test stays cheap (each NAS-Bench-201 program compiles in tens of seconds on CPU).
"""

from biojax.bench.report import to_markdown
from biojax.bench.rule_overhead import DEFAULT_TARGET, TARGETS, target_of
from biojax.bench.suite import run
from biojax.bench.timing import machine, time_interleaved
from biojax.bench.workloads import LayerRuleSpace, NasWorkload, mlp_workload, nb201_workload

__all__ = ["DEFAULT_TARGET", "LayerRuleSpace", "NasWorkload", "TARGETS", "machine",
           "mlp_workload", "nb201_workload", "run", "target_of", "time_interleaved",
           "to_markdown"]
