# Figures across the models of one suite, with their captions, in the suite's own folder (runs
# of different suites never overwrite each other's), registered for `snakemake --report`.


rule figures:
    input:
        tables=lambda w: suite_model_files(w.suite, "table.csv"),
        stats=lambda w: suite_model_files(w.suite, "stats.json"),
        settings=settings_file("stats"),
    output:
        [
            report(
                f"{RESULTS}/{{suite}}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                subcategory="{suite}",
            )
            for name in FIGURES
        ],
        [f"{RESULTS}/{{suite}}/figures/{name}.pdf" for name in FIGURES],
        # each figure's caption, written by the plotting code; report/{name}.rst includes it
        **{
            f"{name}_caption": f"{RESULTS}/{{suite}}/figures/{name}.rst"
            for name in FIGURES
        },
        tables=report(
            f"{RESULTS}/{{suite}}/figures/tables.html",
            caption="../report/tables.rst",
            category="Summary",
            subcategory="{suite}",
        ),
        qc=f"{RESULTS}/{{suite}}/figures/qc.csv",
        summary=f"{RESULTS}/{{suite}}/figures/summary.csv",
        forecast=f"{RESULTS}/{{suite}}/figures/forecast.json",
    log:
        "logs/{suite}/figures.log",
    conda:
        "../envs/icl-probe.yaml"
    params:
        model_dirs=lambda w: suite_model_files(w.suite, ""),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "icl-probe figures --model-dirs {params.model_dirs} --stats-settings-file {input.settings}"
        " --out {params.out} > {log} 2>&1"
