"""Per-checkpoint results of the tiny GPT-NeoX test model, as written by commit 4cc7324 (before the probe registry)."""
import json, sys
sys.path.insert(0, "tests")
from pathlib import Path
import conftest
from icl_probe.runner import make_prompts, probe_checkpoint
settings = {
    "enabled": ["gd_readout", "induction", "attention_sinks", "associative_recall"],
    "seeds": [42, 7], "batch_size": 5, "bootstrap": 50,
    "gd_readout": {"k": 3, "n_prompts": 8, "pair_format": "{x} -> {y}", "query_format": "{x} ->", "separator": "\n"},
    "induction": {"block_len": 8, "n_sequences": 6},
    "attention_sinks": {"n_sequences": 6, "seq_len": 12, "eps": 0.3},
    "associative_recall": {"n_items": 32, "n_pairs": 5, "n_prompts": 6},
}
tmp = Path("/tmp/golden"); tmp.mkdir(exist_ok=True)
path = tmp / "tiny-neox"
conftest.make_model("gpt_neox").save_pretrained(path)
conftest.make_tokenizer().save_pretrained(path)
prompts = make_prompts(str(path), None, tmp / "prompts.json", settings)
out = probe_checkpoint(str(path), "step128", tmp / "out", settings, prompts, suite="mini", model="tiny-neox")
p = json.loads(Path(prompts).read_text())
golden = {"prompts": {k: p[k] for k in settings["enabled"]},
          "results": {k: {f: v for f, v in json.loads(Path(v).read_text()).items() if f not in ("timing", "provenance")}
                      for k, v in out.items()}}
Path("tests/data/pre_registry_results.json").write_text(json.dumps(golden, sort_keys=True))
