# Download one checkpoint's config and weights from the Hub; temporary, so a
# sweep's disk use is bounded by the checkpoints in flight. Local suites need none.


rule fetch:
    input:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
    output:
        temp(directory(FETCHED)),
    log:
        "logs/{suite}/{model}/{revision}/fetch.log",
    benchmark:
        "logs/benchmarks/{suite}/{model}/{revision}/fetch.tsv"
    retries: 2
    conda:
        "../envs/icl-probe.yaml"
    resources:
        fetch=1,
        mem_mb=2000,
        disk_mb=fetch_disk_mb,
        runtime=fetch_runtime,
    shell:
        "icl-probe fetch --manifest {input.manifest} --revision {wildcards.revision}"
        " --dest {output} > {log} 2>&1"
