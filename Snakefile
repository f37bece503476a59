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
include: "rules/aggregate.smk"
include: "rules/figures.smk"


# Steps that take seconds run in the snakemake process; a cluster run submits only
# build_minisuite, fetch and probe.
localrules:
    all,
    settings,
    resolve,
    prompts,
    aggregate,
    figures,


rule all:
    default_target: True
    input:
        per_model_outputs(),
        figure_outputs(),
