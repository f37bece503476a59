# The settings the jobs read, written once from the config as small JSON files
# (results/settings/probes/{probe}.json, one per probe, and results/settings/stats.json)
# instead of carried on every job's command line. Snakemake reruns this rule only when its params (the
# settings) change; the jobs that read the file then rerun, as its newer input.
# An unchanged config leaves the files, and everything after them, as they are
# (editing this rule's code reruns it, and so every job after it).
import json

from icl_probe.io import write_json, write_text


rule settings:
    output:
        settings_file("{kind}"),
    log:
        "logs/settings/{kind}.log",
    # like prompts and probe: before any download (priority 0), which then waits on disk
    priority: 1
    params:
        settings=settings_json,
    run:
        write_json(output[0], json.loads(params.settings))
        write_text(log[0], f"wrote {output[0]}\n")
