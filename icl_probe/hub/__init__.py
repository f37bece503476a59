"""Checkpoint sources: which revisions a model has, what their weights are, and fetching them.

- :mod:`~icl_probe.hub.suites`: suite facts (Pythia's schedule, OLMo-2 repos), ``parse_revision``,
  recorded branch lists (``icl_probe/data/branches/``).
- :mod:`~icl_probe.hub.selection`: ``select_revisions(revisions, spec)``.
- :mod:`~icl_probe.hub.resolve`: ``resolve_model(...)`` -> ``manifest.json``, duplicates flagged.
- :mod:`~icl_probe.hub.fetch`: ``fetch_checkpoint`` (the fetch folder is deleted by the workflow, ``temp()``).
- :mod:`~icl_probe.hub.errors`: the errors, and the name checks run before a name becomes a path.
- :mod:`~icl_probe.hub.testing`: ``serve_hub(root)``, a local Hub stand-in over HTTP for tests.
"""
