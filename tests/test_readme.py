"""The README's Python examples run as written (in order, in one namespace)."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert len(blocks) >= 2, "the README lost its examples"
  namespace: dict = {}
  for block in blocks:
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
  # The examples' own claims, checked against what they computed.
  import numpy as np
  w, b = np.asarray(namespace["w"]), np.asarray(namespace["B"])
  np.testing.assert_allclose(b, np.sign(w) * np.sqrt(2 / (4 + 3)), rtol=1e-6)
  dw = np.asarray(namespace["dw"])
  np.testing.assert_array_equal(np.sign(w + dw), np.sign(w))  # sign-preserving
  assert namespace["state"].assignment.describe() == dict.fromkeys(
      namespace["state"].assignment.layers, "dfa")
