"""Executes docs/notebooks/rules_tour.ipynb and checks what its training cells print."""

import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "rules_tour.ipynb"
KERNEL = "biojax-test-python3"

# 4 classes: chance is 0.25. A healthy run reaches about 0.98 on this problem.
MIN_BP_ACCURACY = 0.9
MIN_FA_ACCURACY = 0.85


def _printed(nb) -> str:
  text = []
  for cell in nb.cells:
    if cell.cell_type != "code":
      continue
    for output in cell.get("outputs", []):
      if output.get("output_type") == "stream":
        text.append(output.get("text", ""))
  return "".join(text)


def _value(text: str, name: str) -> float:
  match = re.search(rf"^{name}=([0-9.]+)\s*$", text, re.MULTILINE)
  assert match, f"The notebook printed no {name}=... line. Output:\n{text[-2000:]}"
  return float(match.group(1))


@pytest.mark.slow
def test_rules_tour_notebook_runs_and_trains(tmp_path, monkeypatch):
  # A kernelspec of our own, pointing at this interpreter (where biojax is installed), so the
  # test neither needs nor trusts a "python3" kernelspec on the machine.
  kernelspec.install(kernel_name=KERNEL, display_name="biojax test", prefix=str(tmp_path))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))

  nb = nbformat.read(NOTEBOOK, as_version=4)
  # Outputs are stored empty; the executed copy stays in memory.
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs, "Commit the notebook with empty outputs."
  client = nbclient.NotebookClient(
      nb, timeout=300, kernel_name=KERNEL,
      resources={"metadata": {"path": str(NOTEBOOK.parent)}})
  client.execute()  # raises CellExecutionError if any cell fails

  for cell in nb.cells:
    for output in cell.get("outputs", []):
      assert output.get("output_type") != "error", output
  printed = _printed(nb)
  bp = _value(printed, "BP_ACCURACY")
  fa = _value(printed, "FA_CLASSIFIER_ACCURACY")
  assert bp > MIN_BP_ACCURACY, f"BP test accuracy {bp} <= {MIN_BP_ACCURACY}"
  assert fa > MIN_FA_ACCURACY, f"FA (classifier) test accuracy {fa} <= {MIN_FA_ACCURACY}"
