"""The probes: one module per probe (its prompts, model pass, pure metric and ``PROBE``
description, :mod:`icl_probe.probes.base`), registered in :mod:`icl_probe.probes.registry`;
shared fits and the seed/bootstrap aggregation live in ``common``.
"""
