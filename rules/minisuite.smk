# The embedded mini-suite: small GPT-NeoX and OLMo-2 models trained here,
# checkpointed on a Pythia-like schedule and written as a Hugging Face Hub cache.


rule build_minisuite:
    output:
        directory(f"{MINI_CACHE}/models--mini--{{name}}"),
    log:
        "logs/minisuite/{name}.log",
    benchmark:
        "logs/benchmarks/minisuite/{name}.tsv"
    # the long poles of the default run: before any probe job, the longest first
    priority: build_priority
    conda:
        "../envs/icl-probe.yaml"
    threads: 1
    params:
        cache=lambda w, output: os.path.dirname(output[0]),
        seed=config["minisuite"]["seed"],
    shell:
        "icl-probe build-minisuite --model {wildcards.name} --cache-dir {params.cache}"
        # every checkpoint's line to the log, one every 30 s to the console (3>&2: fd 3 is the console)
        " --seed {params.seed} --threads {threads} --progress-fd 3 3>&2 > {log} 2>&1"
