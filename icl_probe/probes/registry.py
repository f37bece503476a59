"""The probe registry: the one list of probes, which every other part reads.

Our probes are the modules named in ``BUILTIN``; a probe defined outside the package
is a module (``mypkg.my_probe``) or a file (``probes/my_probe.py``, relative to the
working directory) named in ``probes.external`` in the config, or a module published
under the entry-point group ``icl_probe.probes``. Each such module defines ``PROBE``,
an :class:`icl_probe.probes.base.Probe`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Iterable

from icl_probe.probes.base import Probe, ProbeDefinitionError, check_probe

# The registration of our probes: one module of icl_probe.probes per probe, in this order.
BUILTIN = ("gd_readout", "induction", "attention_sinks", "associative_recall")
ENTRY_POINT_GROUP = "icl_probe.probes"
_LOADED: dict[str, Probe] = {}  # every probe any registry of this process has loaded
_FILES: dict[int, str] = {}  # id(probe) -> the file of the module that defines it (cached probes live on)


@functools.cache
def load_probe_module(spec: str) -> Probe:
    """The ``PROBE`` of a module path (``pkg.mod``) or a ``.py`` file; a clear error if it has none."""
    where = f"probe module {spec!r}"
    try:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise ProbeDefinitionError(f"{where}: no such file (paths are relative to the working directory "
                                           f"{Path.cwd()}); fix probes.external")
            name = f"icl_probe_external_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
    except ProbeDefinitionError:
        raise
    except ImportError as err:
        raise ProbeDefinitionError(f"{where} cannot be imported ({err}); install it or fix probes.external") from None
    except Exception as err:  # the module's own code failed
        raise ProbeDefinitionError(f"{where} failed while importing: {type(err).__name__}: {err}") from None
    if not hasattr(module, "PROBE"):
        raise ProbeDefinitionError(f"{where} defines no PROBE; add PROBE = Probe(...) (see docs/probes.md)")
    probe = check_probe(module.PROBE, where)
    if getattr(module, "__file__", None):
        _FILES[id(probe)] = module.__file__
    return probe


def source_sha256(probe: Probe) -> str | None:
    """SHA-256 of the file defining a third-party ``probe`` (None for ours, which the package's
    code checksum covers): in its results' provenance, so an edited probe is rerun."""
    if probe.name in BUILTIN or id(probe) not in _FILES:
        return None
    return hashlib.sha256(Path(_FILES[id(probe)]).read_bytes()).hexdigest()


def _entry_point_specs() -> list[tuple[str, str]]:
    return [(ep.name, ep.value.split(":")[0]) for ep in entry_points(group=ENTRY_POINT_GROUP)]


@functools.cache
def _registry(external: tuple[str, ...]) -> dict[str, Probe]:
    out: dict[str, Probe] = {}
    origin: dict[str, str] = {}
    sources = [(f"icl_probe.probes.{m}", f"icl_probe.probes.{m}") for m in BUILTIN]
    sources += [(f"entry point {name!r} ({value})", value) for name, value in _entry_point_specs()]
    sources += [(f"probes.external entry {spec!r}", spec) for spec in external]
    for where, spec in sources:
        probe = load_probe_module(spec)
        if probe.name in out:
            raise ProbeDefinitionError(
                f"probe name {probe.name!r} of {where} collides with the probe of {origin[probe.name]}; "
                "rename one of them (the name is the result file and the config section)")
        streams = {p.stream: n for n, p in out.items()}
        if probe.stream in streams:
            raise ProbeDefinitionError(
                f"probe {probe.name!r} of {where} has RNG stream {probe.stream}, the stream of probe "
                f"{streams[probe.stream]!r}; set a different rng_stream")
        out[probe.name] = probe
        origin[probe.name] = where
    _LOADED.update(out)
    return out


def registry(external: Iterable[str] = ()) -> dict[str, Probe]:
    """Every probe: ours, installed entry points, then ``external`` (module paths or files), by name."""
    return _registry(tuple(external or ()))


def external_of(settings: dict | None) -> tuple[str, ...]:
    """``probes.external`` of a probes section (or a whole config)."""
    settings = settings or {}
    inner = settings.get("probes") if isinstance(settings.get("probes"), dict) else settings
    return tuple(inner.get("external", ()) or ())


def get(name: str, external: Iterable[str] = ()) -> Probe:
    """The probe called ``name``; an error listing the known probes if there is none."""
    probes = registry(external)
    if name not in probes and name in _LOADED:  # an external probe this process loaded before
        return _LOADED[name]
    if name not in probes:
        raise ProbeDefinitionError(f"unknown probe {name!r}; known probes: {', '.join(probes)} "
                                   "(a probe of your own goes in probes.external, see docs/probes.md)")
    return probes[name]


def builtin_scalars() -> dict[str, tuple[str, ...]]:
    """Scalar outputs of our probes, by probe (the table's metric columns)."""
    probes = registry()
    return {name: probes[name].scalars for name in BUILTIN}
