"""icl-probe: when and how in-context learning mechanisms appear during training.

The way through the package follows the workflow's DAG:
suite -> revisions (``hub``) -> checkpoint (``runner``) -> activations (``lens``)
-> per-checkpoint results (``probes``) -> per-model table (``stats.table``)
-> statistics (``stats``) -> figures (``plotting``).
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 1  # of every per-checkpoint result file
