"""The probe registry: one description per probe, shared passes, own RNG streams, current results kept."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import transformers

from conftest import make_model, make_tokenizer
from icl_probe.lens import Lens
from icl_probe.probes import registry as reg
from icl_probe.probes.base import Pass, Probe, ProbeDefinitionError, check_probe
from icl_probe.prompts import build_probe_prompts
from icl_probe.runner import make_prompts, probe_checkpoint

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "counting.py"
GOLDEN = Path(__file__).with_name("data") / "pre_registry_results.json"


def _settings_of_golden() -> dict:
    """The probe settings tests/data/make_pre_registry_results.py used (read from that script)."""
    src = (GOLDEN.parent / "make_pre_registry_results.py").read_text()
    return eval(src.split("settings = ", 1)[1].split("\ntmp =")[0])  # a literal dict


def _same(new, old, where="") -> None:
    """``new`` equals ``old`` field for field: every key, list length, string, integer and null
    exactly; floats to 1e-5 relative (the last bits of a float32 forward pass differ with the
    CPU's matmul kernels and thread count; a changed computation moves them far more)."""
    if isinstance(old, dict):
        assert isinstance(new, dict) and new.keys() == old.keys(), where
        for k in old:
            _same(new[k], old[k], f"{where}.{k}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(old, float) and not isinstance(new, bool) and isinstance(new, (int, float)):
        assert new == pytest.approx(old, rel=1e-5, abs=1e-7, nan_ok=True), where
    else:
        assert type(new) is type(old) and new == old, where


def test_the_probe_names_are_listed_once():
    """Every probe comes from the registry: ours are the modules named in BUILTIN, in that order."""
    probes = reg.registry()
    assert tuple(probes)[: len(reg.BUILTIN)] == reg.BUILTIN
    for name in reg.BUILTIN:
        assert probes[name].name == name and probes[name].stream == reg.BUILTIN.index(name) + 1
    # the four names together, in any quoting, in the package, the rules, the config and the presets
    listed = re.compile(r"gd_readout\W+induction\W+attention_sinks\W+associative_recall")
    shipped = [*(REPO / "icl_probe").rglob("*.py"), *(REPO / "icl_probe").rglob("*.yaml"), *(REPO / "rules").glob("*"),
               REPO / "Snakefile", REPO / "config.yaml", *(REPO / "presets").glob("*.yaml")]
    hits = [p for p in shipped if listed.search(p.read_text())]
    assert hits == [REPO / "icl_probe" / "probes" / "registry.py"]


def test_results_are_unchanged_by_the_move_to_the_registry(tmp_path):
    """Results of the tiny model equal, field for field, the ones the code before the registry wrote
    (tests/data/pre_registry_results.json, made at commit 4cc7324 by make_pre_registry_results.py)."""
    golden = json.loads(GOLDEN.read_text())
    settings = _settings_of_golden()
    path = tmp_path / "tiny-neox"
    make_model("gpt_neox").save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    files = make_prompts(str(path), None, tmp_path / "prompts", settings)
    out = probe_checkpoint(str(path), "step128", tmp_path / "out", settings, tmp_path / "prompts",
                           suite="mini", model="tiny-neox")
    for name in settings["enabled"]:
        prompts = json.loads(files[name].read_text())
        assert {k: prompts[k] for k in golden["prompts"][name]} == golden["prompts"][name]
        new = json.loads(out[name].read_text())
        old = golden["results"][name]
        _same({k: new[k] for k in old if k != "repo_id"}, {k: v for k, v in old.items() if k != "repo_id"}, name)


def test_a_probe_draws_its_prompts_from_its_own_stream(tokenizer, small_settings):
    """A probe's prompts do not depend on which other probes are enabled, nor on their order."""
    alone = build_probe_prompts(tokenizer, "associative_recall", dict(small_settings, enabled=["associative_recall"]))
    reordered = dict(small_settings, enabled=list(reversed(small_settings["enabled"])))
    assert build_probe_prompts(tokenizer, "associative_recall", reordered) == alone
    assert len({p.stream for p in reg.registry().values()}) == len(reg.registry())


def _write_probe(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return str(path)


BORROWER = '''
import numpy as np
from icl_probe.probes import induction
from icl_probe.probes.base import Probe

def metric(prefix):
    return {{"prefix_max": float(np.asarray(prefix).mean(axis=-1).max())}}

PROBE = Probe(name="{name}", summary="strongest prefix-matching head, from the induction pass",
              passes=induction.PROBE.passes, metric=metric, scalars=("prefix_max",), prompt_axes={{"prefix": 2}})
'''


def test_probes_needing_the_same_pass_share_one_run(saved_model, small_settings, tmp_path, monkeypatch):
    spec = _write_probe(tmp_path, "borrower_a", BORROWER.format(name="prefix_max_a"))
    settings = dict(small_settings, enabled=["induction", "prefix_max_a"], external=[spec])
    files = make_prompts(str(saved_model), None, tmp_path / "p", settings)
    assert list(files) == ["induction"]  # the borrower reads induction's prompt file
    runs = []
    original = Lens.run

    def counting(self, seqs, *a, **k):
        runs.append(len(seqs))
        return original(self, seqs, *a, **k)

    monkeypatch.setattr(Lens, "run", counting)
    out = probe_checkpoint(str(saved_model), None, tmp_path / "o", settings, tmp_path / "p")
    assert runs == [2 * small_settings["induction"]["n_sequences"]]  # one induction pass for both probes
    from icl_probe.probes import induction
    from icl_probe.prompts import load_prompts

    monkeypatch.setattr(Lens, "run", original)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(saved_model))
    ref = induction.collect(Lens(model), load_prompts(files["induction"]), batch_size=5, pad_id=1)
    top = json.loads(out["prefix_max_a"].read_text())
    expected = [float(r["prefix"].mean(axis=-1).max()) for r in ref]
    np.testing.assert_allclose(top["per_seed"]["prefix_max"], expected, rtol=1e-6)


def _state(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.glob("*.json"))}


def test_enabling_a_probe_runs_only_that_probe(saved_model, small_settings, tmp_path, count_loads):
    """keep_current: a current result is left as it is; only the new probe (or the one whose settings
    changed) is computed, and nothing is loaded when everything is current."""
    base = dict(small_settings, enabled=["gd_readout", "associative_recall"])
    make_prompts(str(saved_model), None, tmp_path / "p", base)
    out = tmp_path / "o"
    probe_checkpoint(str(saved_model), None, out, base, tmp_path / "p", keep_current=True)
    first = _state(out)
    assert len(count_loads) == 1

    probe_checkpoint(str(saved_model), None, out, base, tmp_path / "p", keep_current=True)
    assert len(count_loads) == 1 and _state(out) == first  # nothing ran, nothing rewritten

    shutil.copy(EXAMPLE, tmp_path / "counting.py")
    more = dict(base, enabled=[*base["enabled"], "counting"], external=[str(tmp_path / "counting.py")])
    files = make_prompts(str(saved_model), None, tmp_path / "p", more)
    assert set(files) == {"gd_readout", "associative_recall", "counting"}
    probe_checkpoint(str(saved_model), None, out, more, tmp_path / "p", keep_current=True)
    now = _state(out)
    assert {k: now[k] for k in first} == first and set(now) == {*first, "counting.json"}
    counting = json.loads((out / "counting.json").read_text())
    assert {"count_acc", "count_logp", "count_acc_ci"} <= set(counting["scalars"])
    assert 0.0 <= counting["scalars"]["count_acc"] <= 1.0

    changed = dict(more, associative_recall=dict(more["associative_recall"], n_prompts=4))
    make_prompts(str(saved_model), None, tmp_path / "p", changed)
    probe_checkpoint(str(saved_model), None, out, changed, tmp_path / "p", keep_current=True)
    after = _state(out)
    assert [k for k in after if after[k] != now[k]] == ["associative_recall.json"]


def test_a_result_from_other_code_is_not_kept(saved_model, small_settings, tmp_path, monkeypatch):
    from icl_probe import runner

    settings = dict(small_settings, enabled=["associative_recall"])
    make_prompts(str(saved_model), None, tmp_path / "p", settings)
    probe_checkpoint(str(saved_model), None, tmp_path / "o", settings, tmp_path / "p", keep_current=True)
    before = (tmp_path / "o" / "associative_recall.json").stat().st_mtime_ns
    monkeypatch.setattr(runner, "code_sha256", lambda: "0" * 64)  # as after a fix in the package
    probe_checkpoint(str(saved_model), None, tmp_path / "o", settings, tmp_path / "p", keep_current=True)
    assert (tmp_path / "o" / "associative_recall.json").stat().st_mtime_ns != before


def test_an_edited_third_party_probe_is_not_kept(saved_model, small_settings, tmp_path):
    """The result of a probe defined outside the package records its file's checksum: after an edit
    the probe is rerun, while our probes' results stay as they are."""
    mine = tmp_path / "my_counting.py"
    shutil.copy(EXAMPLE, mine)
    settings = dict(small_settings, enabled=["induction", "counting"], external=[str(mine)])
    make_prompts(str(saved_model), None, tmp_path / "p", settings)
    probe_checkpoint(str(saved_model), None, tmp_path / "o", settings, tmp_path / "p", keep_current=True)
    result = json.loads((tmp_path / "o" / "counting.json").read_text())
    assert len(result["provenance"]["probe_sha256"]) == 64
    assert "probe_sha256" not in json.loads((tmp_path / "o" / "induction.json").read_text())["provenance"]
    before = {n: (tmp_path / "o" / f"{n}.json").stat().st_mtime_ns for n in ("induction", "counting")}
    probe_checkpoint(str(saved_model), None, tmp_path / "o", settings, tmp_path / "p", keep_current=True)
    assert {n: (tmp_path / "o" / f"{n}.json").stat().st_mtime_ns for n in before} == before
    mine.write_text(mine.read_text() + "# a fix\n")
    probe_checkpoint(str(saved_model), None, tmp_path / "o", settings, tmp_path / "p", keep_current=True)
    after = {n: (tmp_path / "o" / f"{n}.json").stat().st_mtime_ns for n in before}
    assert after["induction"] == before["induction"] and after["counting"] != before["counting"]


def test_protocol_errors_name_the_probe_and_the_fix(tmp_path):
    with pytest.raises(ProbeDefinitionError, match=r"nothing\.py.*defines no PROBE.*docs/probes\.md"):
        reg.load_probe_module(_write_probe(tmp_path, "nothing", "X = 1\n"))
    with pytest.raises(ProbeDefinitionError, match=r"PROBE is a dict, not an icl_probe\.probes\.base\.Probe"):
        reg.load_probe_module(_write_probe(tmp_path, "wrong", "PROBE = {}\n"))
    bad = Probe(name="bad", summary="", passes=(), metric=None, scalars=(), prompt_axes={})
    with pytest.raises(ProbeDefinitionError) as err:
        check_probe(bad, "module x")
    assert "passes must be" in str(err.value) and "metric is not callable" in str(err.value)
    assert "\n" not in str(err.value)
    clash = _write_probe(tmp_path, "clash", EXAMPLE.read_text().replace('name="counting"', 'name="induction"')
                         .replace('prompts="counting"', 'prompts="induction"'))
    with pytest.raises(ProbeDefinitionError, match=r"probe name 'induction' of probes.external entry .*clash\.py"
                                                   r".*collides with the probe of icl_probe\.probes\.induction"):
        reg.registry([clash])
    with pytest.raises(ProbeDefinitionError, match="no such file"):
        reg.registry([str(tmp_path / "missing.py")])


def test_the_example_probe_is_about_thirty_lines_and_valid():
    lines = [l for l in EXAMPLE.read_text().splitlines() if l.strip()]
    assert len(lines) <= 45
    probe = reg.load_probe_module(str(EXAMPLE))
    assert probe.name == "counting" and check_probe(probe, "example") is probe
    assert isinstance(probe.passes[0], Pass)
