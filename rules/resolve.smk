# Which revisions of a model to analyse, with commit, weight files and hashes,
# written before anything is downloaded.


rule resolve:
    input:
        built_minisuite,
    output:
        manifest=f"{RESULTS}/{{suite}}/{{model}}/manifest.json",
    log:
        "logs/{suite}/{model}/resolve.log",
    conda:
        "../envs/icl-probe.yaml"
    params:
        record=resolve_record_json,
        cache=lambda w: model_cache_dir(record(w)) or "",
    shell:
        "icl-probe resolve --record {params.record:q} --cache-dir '{params.cache}'"
        " --out {output.manifest} > {log} 2>&1"
