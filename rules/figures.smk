# Figures across models, with their captions, registered for `snakemake --report report.html`.


rule figures:
    input:
        tables=[f"{RESULTS}/{m['suite']}/{m['model']}/table.csv" for m in MODELS],
        stats=[f"{RESULTS}/{m['suite']}/{m['model']}/stats.json" for m in MODELS],
        settings=settings_file("stats"),
    output:
        [
            report(
                f"{RESULTS}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURES
        ],
        [f"{RESULTS}/figures/{name}.pdf" for name in FIGURES],
        # each figure's caption, written by the plotting code; report/{name}.rst includes it
        **{f"{name}_caption": f"{RESULTS}/figures/{name}.rst" for name in FIGURES},
        qc=f"{RESULTS}/figures/qc.csv",
        summary=f"{RESULTS}/figures/summary.csv",
        forecast=f"{RESULTS}/figures/forecast.json",
    log:
        "logs/figures.log",
    conda:
        "../envs/icl-probe.yaml"
    params:
        model_dirs=[f"{RESULTS}/{m['suite']}/{m['model']}" for m in MODELS],
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "icl-probe figures --model-dirs {params.model_dirs} --stats-settings-file {input.settings}"
        " --out {params.out} > {log} 2>&1"
