# Prompt sets once per model; then one job per checkpoint that loads the model
# once and runs every enabled probe.


rule prompts:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
    output:
        f"{RESULTS}/{{suite}}/{{model}}/prompts.json",
    log:
        "logs/{suite}/{model}/prompts.log",
    conda:
        "../envs/icl-probe.yaml"
    params:
        settings=probe_settings_json,
        cache="resources/tokenizers",
    shell:
        "icl-probe prompts --manifest {input.manifest} --settings {params.settings:q}"
        " --cache-dir {params.cache} --out {output} > {log} 2>&1"


rule probe:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
        prompts=f"{RESULTS}/{{suite}}/{{model}}/prompts.json",
        checkpoint=checkpoint_files,
    output:
        [f"{RESULTS}/{{suite}}/{{model}}/{{revision}}/{probe}.json" for probe in PROBES],
    log:
        "logs/{suite}/{model}/{revision}/probe.log",
    conda:
        "../envs/icl-probe.yaml"
    params:
        settings=probe_settings_json,
        out=lambda w: f"{RESULTS}/{w.suite}/{w.model}/{w.revision}",
        cache=checkpoint_cache,
    threads: 1
    resources:
        mem_mb=probe_mem_mb,
        runtime=probe_runtime,
        gpu=1 if ON_GPU else 0,
    shell:
        "icl-probe probe --manifest {input.manifest} --revision {wildcards.revision}"
        " --prompts {input.prompts} --cache-dir {params.cache} --settings {params.settings:q}"
        " --out {params.out} > {log} 2>&1"
