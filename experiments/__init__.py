"""Experiment configs: each module defines ``get_config()`` returning an ml_collections
ConfigDict, passed to ``python -m biojax.main --config=experiments/<name>.py`` (run from the
repository root), whose ``task`` field names what runs (docs/pipeline.md, "Tasks"). Configs
are composed by ordinary imports (``from experiments import train``), never loaded by path,
and hold no program code."""
