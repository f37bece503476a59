# Prompt files once per model and probe; then one job per checkpoint that loads the model
# once and runs every enabled probe.


rule prompts:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
        settings=settings_file("probes/{probe}"),
    output:
        f"{RESULTS}/{{suite}}/{{model}}/prompts/{{probe}}.json",
    log:
        "logs/{suite}/{model}/prompts/{probe}.log",
    # ready before the first download lands (see the probe rule)
    priority: 1
    conda:
        "../envs/icl-probe.yaml"
    params:
        cache="resources/tokenizers",
    shell:
        "icl-probe prompts --manifest {input.manifest} --probe {wildcards.probe}"
        " --settings-file {input.settings} --cache-dir {params.cache} --out {output} > {log} 2>&1"


# The results are update() outputs, which Snakemake keeps instead of deleting before the
# job reruns: a newly enabled probe, or one probe's changed settings file, reruns the job,
# which (--keep-current) computes only the probes whose result is not current and leaves
# the others' files as they are (Snakemake then only refreshes their mtime); if the job
# fails, Snakemake restores the previous files.
rule probe:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
        prompts=prompt_files,
        checkpoint=checkpoint_files,
        settings=[settings_file(f"probes/{p}") for p in PROBES],
        probe_code=EXTERNAL_FILES,
    output:
        [update(f"{RESULTS}/{{suite}}/{{model}}/{{revision}}/{p}.json") for p in PROBES],
    log:
        "logs/{suite}/{model}/{revision}/probe.log",
    benchmark:
        "logs/benchmarks/{suite}/{model}/{revision}/probe.tsv"
    # before any new download (fetch: priority 0, one at a time by default): a fetched
    # checkpoint is probed, then deleted, while the next one downloads
    priority: 1
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
        " --keep-current --threads {threads} --out {params.out} > {log} 2>&1"
