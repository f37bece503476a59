# Prompt sets once per model; then one job per checkpoint that loads the model
# once and runs every enabled probe.


rule prompts:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
        settings=settings_file("probes"),
    output:
        f"{RESULTS}/{{suite}}/{{model}}/prompts.json",
    log:
        "logs/{suite}/{model}/prompts.log",
    conda:
        "../envs/icl-probe.yaml"
    params:
        cache="resources/tokenizers",
    shell:
        "icl-probe prompts --manifest {input.manifest} --settings-file {input.settings}"
        " --cache-dir {params.cache} --out {output} > {log} 2>&1"


rule probe:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
        prompts=f"{RESULTS}/{{suite}}/{{model}}/prompts.json",
        checkpoint=checkpoint_files,
        settings=settings_file("probes"),
    output:
        [f"{RESULTS}/{{suite}}/{{model}}/{{revision}}/{probe}.json" for probe in PROBES],
    log:
        "logs/{suite}/{model}/{revision}/probe.log",
    benchmark:
        "logs/benchmarks/{suite}/{model}/{revision}/probe.tsv"
    conda:
        "../envs/icl-probe.yaml"
    threads: 1
    resources:
        mem_mb=probe_mem_mb,
        runtime=probe_runtime,
        gpu=1 if ON_GPU else 0,
    params:
        out=lambda w: f"{RESULTS}/{w.suite}/{w.model}/{w.revision}",
        cache=checkpoint_cache,
    shell:
        "icl-probe probe --manifest {input.manifest} --revision {wildcards.revision}"
        " --prompts {input.prompts} --cache-dir {params.cache} --settings-file {input.settings}"
        " --threads {threads} --out {params.out} > {log} 2>&1"
