# icl-probe: from a checkpoint suite to figures of how in-context learning emerges.
# suite -> revisions -> checkpoint -> per-checkpoint results -> per-model table
# -> statistics -> figures. One rule file per step; helpers in rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/settings.smk"
include: "rules/minisuite.smk"
include: "rules/resolve.smk"
include: "rules/fetch.smk"
include: "rules/probe.smk"
include: "rules/refine.smk"
include: "rules/aggregate.smk"
include: "rules/figures.smk"


# Steps that take seconds run in the snakemake process; a cluster run submits only
# build_minisuite, fetch and probe.
localrules:
    all,
    settings,
    resolve,
    prompts,
    refine,
    aggregate,
    figures,


rule all:
    default_target: True
    input:
        per_model_outputs(),
        figure_outputs(),


# After a run that did something (not a dry run, nor --no-hooks, nor "Nothing to be done"):
# a short per-model summary and where the outputs are; `icl-probe summary results` prints it later.
onsuccess:
    try:
        from icl_probe.summary import format_summary, summarise_results

        rows = summarise_results(
            RESULTS, [(m["suite"], m["model"]) for m in MODELS]
        )
        print(format_summary(rows, RESULTS))
    except Exception as e:  # a finished run never fails on its summary
        print(
            f"icl-probe: no summary ({type(e).__name__}: {e}); try `icl-probe summary {RESULTS}`"
        )
