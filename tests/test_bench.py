"""The benchmark suite runs and writes well-formed output (it checks no speeds)."""

import json
import subprocess
import sys


def test_bench_tiny_writes_report(tmp_path):
  subprocess.run([sys.executable, "-m", "biojax.bench", f"--out={tmp_path}", "--tiny"],
                 check=True, capture_output=True, timeout=600)
  report = json.loads((tmp_path / "bench.json").read_text())
  assert report["machine"]["backend"] == "cpu"
  (workload,) = report["rule_overhead"].values()
  from biojax import rules
  for name in rules.rule_names():
    assert workload["seconds_per_step"][name] > 0
  assert abs(workload["ratio_to_bp"]["bp"] - 1.0) < 1e-12
  assert "ratio to bp" in (tmp_path / "bench.md").read_text()
