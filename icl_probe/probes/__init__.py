"""The four probes as pure metric functions of arrays (shapes in each docstring).

``gd_readout``, ``induction``, ``attention_sinks``, ``associative_recall``; shared
fits and the seed/bootstrap aggregation live in ``common``. The model passes that
produce their input arrays are in :mod:`icl_probe.runner`.
"""
