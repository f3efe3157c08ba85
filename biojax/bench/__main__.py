"""``python -m biojax.bench --out=DIR [--full] [--tiny] [--config=FILE]``: every section of
the benchmarks (:mod:`biojax.bench`); writes ``bench.json`` and ``bench.md`` in DIR."""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from biojax.bench.report import to_markdown
from biojax.bench.suite import run

_OUT = flags.DEFINE_string("out", "bench_out", "Output directory.")
_FULL = flags.DEFINE_bool("full", False, "Larger workloads and more repeats.")
_TINY = flags.DEFINE_bool("tiny", False, "Tiny workloads (for tests: checks it runs, not speed).")
# The search settings of the NAS sections, from a config file as biojax.main reads it: the
# figures are those of the quickstart search, so they come from its own file (run from the
# repository root), and any field can be overridden (--config.proxy.steps=20).
_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/quickstart.py",
    "Search config of the NAS sections (a task 'search' config, as experiments/quickstart.py).",
    lock_config=True)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  out = _OUT.value
  os.makedirs(out, exist_ok=True)
  command = " ".join(["python -m biojax.bench", *sys.argv[1:]])
  source = config_flags.get_config_filename(flags.FLAGS["config"])
  report = {"command": command,
            **run(_CONFIG.value, tiny=_TINY.value, full=_FULL.value, config_source=source)}
  with open(os.path.join(out, "bench.json"), "w") as f:
    json.dump(report, f, indent=2)
  markdown = to_markdown(report)
  with open(os.path.join(out, "bench.md"), "w") as f:
    f.write(markdown)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
