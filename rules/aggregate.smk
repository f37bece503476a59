# Per model: the tidy per-checkpoint table, statistics across training and QC, from
# exactly the result files of the enabled probes (--results), never a folder's every file.


rule aggregate:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
        results=probe_results,
        settings=settings_file("stats"),
        refinement=final_round,
    output:
        table=f"{RESULTS}/{{suite}}/{{model}}/table.csv",
        parquet=f"{RESULTS}/{{suite}}/{{model}}/table.parquet",
        layers=f"{RESULTS}/{{suite}}/{{model}}/layers.csv",
        stats=f"{RESULTS}/{{suite}}/{{model}}/stats.json",
        qc=f"{RESULTS}/{{suite}}/{{model}}/qc.json",
    log:
        "logs/{suite}/{model}/aggregate.log",
    conda:
        "../envs/icl-probe.yaml"
    params:
        model_dir=lambda w: f"{RESULTS}/{w.suite}/{w.model}",
        refinement=lambda w, input: (
            f"--refinement {input.refinement}" if input.refinement else ""
        ),
    shell:
        "icl-probe aggregate --model-dir {params.model_dir} --manifest {input.manifest}"
        " --results {input.results} --stats-settings-file {input.settings} {params.refinement}"
        " > {log} 2>&1"
