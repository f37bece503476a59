"""icl-probe: when and how in-context learning mechanisms appear during training.

The way through the package follows the workflow's DAG:
suite -> revisions (``hub``) -> checkpoint (``runner``) -> activations (``lens``)
-> per-checkpoint results (``probes``) -> per-model table (``stats.table``)
-> statistics (``stats``) -> figures (``plotting``).
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 1  # of every per-checkpoint result file


def __getattr__(name: str):
    """``icl_probe.probe`` (:func:`icl_probe.api.probe`), imported on first use: ``import icl_probe`` stays light."""
    if name == "probe":
        from icl_probe.api import probe

        return probe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
