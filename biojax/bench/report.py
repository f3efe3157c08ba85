"""``bench.md``: the report of every section as markdown."""

from __future__ import annotations

import statistics

from biojax.bench.rule_overhead import target_of
from biojax.bench.timing import KEY_IMPL


def _mib(x: float) -> str:
  return f"{x / 2**20:.1f} MiB"



def _describe(w: dict) -> str:
  return (f"{w['network']}, input {w['input_shape']}, rules {', '.join(w['rules'])}; "
          f"{w['steps']} steps of batch {w['batch_size']}, {w['validation_examples']} "
          f"validation examples")



def to_markdown(report: dict) -> str:
  m = report["machine"]
  lines = [
      "# biojax benchmarks", "",
      f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}"
      + (f" ({m['device_kind']})" if m.get("device_kind") else "")
      + f", jax {m['jax']}. Load average (1, 5, 15 min) at start / end: "
      f"{report['load_average_start']} / {report['load_average_end']}.",
      f"Command: `{report['command']}` ({report['wall_seconds']:.0f} s). NAS settings from "
      f"{report['nas_config_source']}; synthetic data of its shapes; PRNG keys `{KEY_IMPL}`.",
      "",
      "## 1. Rule overhead: train-step time relative to bp (same run, medians, interleaved)",
      ""]
  for name, r in report["rule_overhead"].items():
    lines += [f"### {name}, batch {r['batch_shape']}", "",
              "| rule | ms/step | ratio to bp | target |", "|---|---|---|---|"]
    for rule, ratio in r["ratio_to_bp"].items():
      target = target_of(rule)
      lines.append(f"| {rule} | {1e3 * r['seconds_per_step'][rule]:.2f} | {ratio:.3f} | "
                   f"{f'<= {target:.2f}' if target else ''} |")
    lean = r.get("error_driven_build_bp_over_plain_jax_grad")
    if "bp_over_plain_jax_grad" in r:
      lines += ["", f"bp through biojax / plain jax.grad step: "
                f"{r['bp_over_plain_jax_grad']:.3f} (all rules compiled in)"
                + (f"; {lean:.3f} (built for the error-driven rules only, "
                   "`RuleOptions(rules=...)`)" if lean is not None else "")]
    lines.append("")

  c = report["compilations"]
  w = c["workload"]
  lines += ["## 2. Compilations during a search", "",
            f"{_describe(w)}; regularised evolution, {w['generations']} generations of "
            f"{w['population']} children, evaluator strategy `{w['strategy']}`.", "",
            f"- genomes evaluated: {c['genomes_evaluated']} ({c['distinct_genomes']} distinct)",
            f"- compiled variants per program: {c['compiled_variants_per_program']}",
            f"- XLA compilations in all: {c['xla_compilations']}; per generation "
            f"{c['xla_compilations_per_generation']} (in the evaluator: "
            f"{c['evaluator_xla_compilations_per_generation']})",
            f"- target (one variant per program kind, none after the first generation): "
            f"{'met' if c['met'] else 'MISSED'}", ""]

  t = report["search_throughput"]
  w, s = t["workload"], t["generation_seconds"]
  naive = "; ".join(f"{r['seconds']:.1f} s ({r['xla_compilations']} compilations; "
                    f"{r['seconds_without_compiling']:.2f} s run again)" for r in t["naive"])
  accuracy = ", ".join(f"{d:+.4f}" for d in t["naive_accuracy_minus_evaluator"])
  lines += ["## 3. Search throughput against one compiled program per candidate", "",
            f"{_describe(w)}; regularised evolution, generations of {w['population']}, "
            f"strategy `{w['strategy']}`. Search: first generation {s[0]:.1f} s (compiles), "
            f"then median {statistics.median(s[1:]):.2f} s (of {len(s) - 1}); a search of 64 "
            f"candidates: {t['search_of_64_seconds_extrapolated']:.0f} s. Naive, per candidate: "
            f"{naive}. Validation accuracy, naive minus evaluator (same genome, same initial "
            f"state and batches): {accuracy}.", "",
            "| | candidates/minute |", "|---|---|"]
  lines += [f"| {k} | {r:.1f} |" for k, r in t["candidates_per_minute"].items()]
  lines += ["", f"Search / naive: **{t['ratio_search_to_naive']:.1f}x** (target >= 3: "
            f"{'met' if t['met'] else 'MISSED'}); after the first generation / naive: "
            f"{t['ratio_after_first_generation_to_naive']:.1f}x; after the first generation "
            f"/ naive without compiling: "
            f"{t['ratio_after_first_generation_to_naive_without_compiling']:.2f}x.", ""]

  a = report["against_the_machine"]
  w = a["workload"]
  lines += ["## 4. Against the machine: FLOP/s of the MLP train step / FLOP/s of a matmul", "",
            f"{w['network']}, batch {w['batch']}, `{w['rule']}`, SGD, float32; "
            f"{a['flops_per_step_by_hand'] / 1e9:.3f} GFLOP per step by hand "
            f"(XLA cost analysis: {a['flops_per_step_xla_cost_analysis'] / 1e9:.3f}).", "",
            "| program | ms | GFLOP/s | / matmul |", "|---|---|---|---|"]
  for k, v in a["flops_per_second"].items():
    lines.append(f"| {k} | {1e3 * a['seconds'][k]:.2f} | {v / 1e9:.1f} | "
                 f"{a['ratio_to_matmul'][k]:.2f} |")
  lines += ["", f"Train step / matmul: **{a['ratio']:.2f}** (target >= 0.6: "
            f"{'met' if a['met'] else 'MISSED'}).", ""]

  lines += ["## 5. Evaluator strategies: seconds per candidate relative to a single-candidate "
            "program", ""]
  for name, s in report["evaluator_strategies"].items():
    if name == "convolution in a loop":
      continue
    w = s["workload"]
    lines += [f"### {name}", "",
              f"{_describe(w)}; population {w['population']}, chunks of {w['chunk_size']}. "
              f"Single candidate: population 1, `{w['single_candidate_strategy']}`.", "",
              "| program | s/call | s/candidate | relative |", "|---|---|---|---|"]
    for k, v in s["per_candidate_relative_to_single"].items():
      lines.append(f"| {k} | {s['seconds_per_call'][k]:.3f} | "
                   f"{s['seconds_per_candidate'][k]:.4f} | {v:.2f} |")
    lines += ["", f"Fastest: `{s['fastest']}`; `default_strategy()` on this backend: "
              f"`{s['default_strategy']}`.", ""]
  conv = report["evaluator_strategies"].get("convolution in a loop")
  if conv:
    lines += [f"Convolution (3x3, input {conv['input_shape']}, {conv['features']} features, "
              f"forward and weight gradient), {conv['calls']} of them:", "",
              "| how | ms per convolution | relative |", "|---|---|---|"]
    for k, v in conv["seconds_per_convolution"].items():
      lines.append(f"| {k} | {1e3 * v:.3f} | {conv['relative_to_called_one_by_one'][k]:.2f} |")
    lines.append("")

  mem = report["memory"]
  w = mem["workload"]
  lines += ["## 6. Memory of the evaluator program", "",
            f"{_describe(w)}; {w['population']} candidates (chunks of {w['chunk_size']}); "
            "XLA's buffer assignment (`compiled.memory_analysis()`).", "",
            "| strategy | arguments | outputs | temporaries | total | per candidate "
            "| device peak |", "|---|---|---|---|---|---|---|"]
  for name, e in mem["strategies"].items():
    peak = e.get("device_peak_bytes_in_use")
    lines.append(f"| {name} | {_mib(e['argument'])} | {_mib(e['output'])} | "
                 f"{_mib(e['temp'])} | {_mib(e['total_bytes'])} | "
                 f"{_mib(e['bytes_per_candidate'])} | "
                 f"{_mib(peak) if peak is not None else '-'} |")
  return "\n".join(lines + [""])
