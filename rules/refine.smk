# Adaptive refinement (docs/refinement.md), for models with a `refine` section: after the
# coarse revisions are probed, round 1 picks the branches that split each transition's
# bracket; their probe jobs run; round 2 looks again, and so on until a round adds nothing.
# Each round is a Snakemake checkpoint, so the DAG grows as rounds finish, and a rerun,
# --forcerun or dry run reads the rounds already written (helpers in rules/common.smk).


checkpoint refine:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
        results=round_results,
        previous=previous_round,
        settings=settings_file("stats"),
    output:
        f"{RESULTS}/{{suite}}/{{model}}/refine/round{{round}}.json",
    log:
        "logs/{suite}/{model}/refine/round{round}.log",
    conda:
        "../envs/icl-probe.yaml"
    params:
        model_dir=lambda w: f"{RESULTS}/{w.suite}/{w.model}",
        coarse=lambda w: REVISIONS[(w.suite, w.model)],
        settings=lambda w: json.dumps(REFINE[(w.suite, w.model)], sort_keys=True),
        previous=lambda w, input: (
            f"--previous {input.previous}" if input.previous else ""
        ),
    shell:
        "icl-probe refine --model-dir {params.model_dir} --manifest {input.manifest}"
        " --round {wildcards.round} --coarse {params.coarse} {params.previous}"
        " --results {input.results} --settings {params.settings:q}"
        " --stats-settings-file {input.settings} --out {output} > {log} 2>&1"


if workflow.is_main_process:
    import sys

    from icl_probe.refine import progress_line

    for (suite, model), refine_settings in REFINE.items():
        if line := progress_line(
            f"{RESULTS}/{suite}/{model}",
            suite,
            model,
            REVISIONS[(suite, model)],
            refine_settings,
        ):
            print(f"icl-probe: {line}", file=sys.stderr)
