# icl-probe: from a checkpoint suite to figures of how in-context learning emerges.
# suite -> revisions -> checkpoint -> per-checkpoint results -> per-model table
# -> statistics -> figures. One rule file per step; helpers in rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/minisuite.smk"
include: "rules/resolve.smk"
include: "rules/fetch.smk"
include: "rules/probe.smk"
include: "rules/aggregate.smk"
include: "rules/figures.smk"


rule all:
    input:
        per_model_outputs(),
        figure_outputs(),
    default_target: True
