"""biojax.plots: the curves and alignment figures are written as PNG files, also when no
layer has a feedback matrix."""

from biojax import plots

PNG = b"\x89PNG\r\n\x1a\n"
RECORDS = [
    {"step": 0, "split": "validation", "loss": 2.3, "accuracy": 0.1,
     "alignment": {"dense_0": 80.0, "classifier": None}},
    {"step": 50, "split": "train", "loss": 1.0, "accuracy": 0.6},
    {"step": 100, "split": "train", "loss": 0.5, "accuracy": 0.8},
    {"step": 100, "split": "validation", "loss": 0.6, "accuracy": 0.75,
     "alignment": {"dense_0": 40.0, "classifier": None}},
    {"step": 100, "split": "test", "loss": 0.6, "accuracy": 0.74},
]


def read(path):
  with open(path, "rb") as f:
    return f.read()


def test_plots_are_png(tmp_path):
  plots.plot_curves(RECORDS, str(tmp_path / "curves.png"))
  plots.plot_alignment(RECORDS, ["dense_0", "classifier"], str(tmp_path / "alignment.png"))
  plots.plot_alignment(RECORDS, ["classifier"], str(tmp_path / "none.png"))  # no angle at all
  for name in ("curves.png", "alignment.png", "none.png"):
    data = read(tmp_path / name)
    assert data[:8] == PNG and len(data) > 1000
  assert read(tmp_path / "alignment.png") != read(tmp_path / "none.png")
