"""Experiment configs: each module defines ``get_config()`` returning an ml_collections
ConfigDict, passed to ``python -m biojax.main --config=experiments/<name>.py``."""
