"""How many checkpoints adaptive refinement needs, replayed on a dense sweep's results.

Given the results folder of a run that probed every branch (the default run does), each
model's refinement is replayed offline: the coarse selection's statistics, then the rounds
exactly as ``icl-probe refine`` decides them (``icl_probe.refine.refine_round``), reading the
dense run's per-checkpoint results instead of probing. Prints, per model, the checkpoints
used against the dense sweep's count, each transition's final bracket against the dense
sweep's, and the half-max step of both.

    python benchmarks/refine_savings.py results --coarse log:4 --transitions half_max zero_crossing
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icl_probe.aggregate import replay_refinement
from icl_probe.io import read_json
from icl_probe.refine import DEFAULTS, TRANSITIONS, transition_bracket
from icl_probe.stats.model import settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir")
    p.add_argument("--coarse", default="log:4", help="the coarse selection (default log:4)")
    p.add_argument("--transitions", nargs="+", default=DEFAULTS["transitions"], choices=TRANSITIONS)
    p.add_argument("--budget", type=int, default=DEFAULTS["budget"])
    args = p.parse_args()
    root = Path(args.results_dir)
    stats_cfg = settings(read_json(root / "settings" / "stats.json"))
    cfg = {"transitions": args.transitions, "budget": args.budget}
    used = dense_n = 0
    print(f"coarse {args.coarse}, transitions {' '.join(args.transitions)}, budget {args.budget}")
    for model_dir in sorted(p.parent for p in root.glob("*/*/manifest.json")):
        out = replay_refinement(model_dir, stats_cfg, args.coarse, cfg)
        rec = out["record"]
        used, dense_n = used + rec["n_checkpoints"], dense_n + rec["n_dense"]
        print(f"{model_dir.parent.name}/{model_dir.name}: {rec['n_checkpoints']} of {rec['n_dense']} checkpoints, "
              f"{len(out['rounds'])} rounds")
        for name, state in rec["transitions"].items():
            print(f"  {name}: {state['status']} {state['bracket']} (dense sweep: "
                  f"{transition_bracket(out['dense'], name)[0]})")
        st, dst = out["final"]["statistics"], out["dense"]["statistics"]
        print(f"  half_max_step {st.get('half_max_step')} (dense {dst.get('half_max_step')}), interpolated "
              f"{st.get('half_max_step_interp')} (dense {dst.get('half_max_step_interp')}); peak at "
              f"{st.get('peak_step')} (dense {dst.get('peak_step')})")
    print(f"total: {used} of {dense_n} checkpoints ({used / max(dense_n, 1):.0%})")


if __name__ == "__main__":
    main()
