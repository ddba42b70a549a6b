# metrics stage: paper A's per-sample metrics. One job per domain and metric reads every
# checkpoint's trace (or eval) files; a gather rule concatenates the domains.
from grokpath.data import split_path

METRIC_TABLES = ["memorization", "memorization_ablation", "pathways", "distances", "consistency", "onset", "groups"]
PATHWAY_SPLITS = list(dict.fromkeys(config["pathways"]["splits"] + [config["pathways"]["distance_split"]]))
CONSISTENCY_SPLITS = config["consistency"]["splits"]


rule memorization:
    input:
        traces=domain_traces(["train"]),
    output:
        memorization="results/metrics/domains/{domain}/memorization.parquet",
        ablation="results/metrics/domains/{domain}/memorization_ablation.parquet",
    params:
        cfg=cfg("memorization"),
    threads: res("memorization", "threads")
    resources:
        mem_mb=res("memorization", "mem_mb"),
        runtime=res("memorization", "runtime"),
    log:
        "results/logs/memorization/{domain}.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath memorization --cfg {params.cfg:q} --domain {wildcards.domain:q} --traces {input.traces:q}"
        " --out {output.memorization:q} --ablation-out {output.ablation:q} --log {log:q}"


rule pathways:
    input:
        traces=domain_traces(PATHWAY_SPLITS),
        memorization="results/metrics/domains/{domain}/memorization.parquet",
    output:
        pathways="results/metrics/domains/{domain}/pathways.parquet",
        distances="results/metrics/domains/{domain}/distances.parquet",
    params:
        cfg=cfg("pathways"),
    threads: res("pathways", "threads")
    resources:
        mem_mb=res("pathways", "mem_mb"),
        runtime=res("pathways", "runtime"),
    log:
        "results/logs/pathways/{domain}.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath pathways --cfg {params.cfg:q} --domain {wildcards.domain:q} --traces {input.traces:q}"
        " --memorization {input.memorization:q} --out {output.pathways:q} --distances-out {output.distances:q}"
        " --threads {threads} --log {log:q}"


rule cross_distances:
    input:
        pathways=expand("results/metrics/domains/{domain}/pathways.parquet", domain=DOMAINS),
    output:
        "results/metrics/cross_distances.parquet",
    params:
        cfg=cfg("pathways"),
    threads: res("cross_distances", "threads")
    resources:
        mem_mb=res("cross_distances", "mem_mb"),
        runtime=res("cross_distances", "runtime"),
    log:
        "results/logs/cross_distances/all.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath cross-distances --cfg {params.cfg:q} --pathways {input.pathways:q} --out {output:q}"
        " --threads {threads} --log {log:q}"


rule consistency:
    input:
        traces=domain_traces(CONSISTENCY_SPLITS),
        router_weights=expand("results/traces/{ckpt}/router_weights.npy", ckpt=CKPTS),
    output:
        "results/metrics/domains/{domain}/consistency.parquet",
    params:
        cfg=cfg("consistency"),
    threads: res("consistency", "threads")
    resources:
        mem_mb=res("consistency", "mem_mb"),
        runtime=res("consistency", "runtime"),
    log:
        "results/logs/consistency/{domain}.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath consistency --cfg {params.cfg:q} --domain {wildcards.domain:q} --traces {input.traces:q}"
        " --router-weights {input.router_weights:q} --out {output:q} --log {log:q}"


rule onset:
    input:
        eval_samples=expand("results/eval/{ckpt}/samples.parquet", ckpt=CKPTS),
    output:
        "results/metrics/domains/{domain}/onset.parquet",
    params:
        cfg=cfg("onset"),
    threads: res("onset", "threads")
    resources:
        mem_mb=res("onset", "mem_mb"),
        runtime=res("onset", "runtime"),
    log:
        "results/logs/onset/{domain}.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath onset --cfg {params.cfg:q} --domain {wildcards.domain:q} --eval-samples {input.eval_samples:q}"
        " --out {output:q} --log {log:q}"


rule groups:
    input:
        memorization="results/metrics/domains/{domain}/memorization.parquet",
        onset="results/metrics/domains/{domain}/onset.parquet",
        train_texts=lambda wildcards: split_path(config["domains"], wildcards.domain, "train"),
        test_texts=lambda wildcards: split_path(config["domains"], wildcards.domain, "test"),
    output:
        "results/metrics/domains/{domain}/groups.parquet",
    params:
        cfg=cfg("matching"),
    threads: res("groups", "threads")
    resources:
        mem_mb=res("groups", "mem_mb"),
        runtime=res("groups", "runtime"),
    log:
        "results/logs/groups/{domain}.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath groups --cfg {params.cfg:q} --domain {wildcards.domain:q} --memorization {input.memorization:q}"
        " --onset {input.onset:q} --train-texts {input.train_texts:q} --test-texts {input.test_texts:q}"
        " --out {output:q} --threads {threads} --log {log:q}"


rule metrics_gather:
    input:
        lambda wildcards: expand("results/metrics/domains/{domain}/{table}.parquet", domain=DOMAINS, table=wildcards.table),
    output:
        "results/metrics/{table}.parquet",
    wildcard_constraints:
        table="|".join(METRIC_TABLES),
    threads: res("metrics_gather", "threads")
    resources:
        mem_mb=res("metrics_gather", "mem_mb"),
        runtime=res("metrics_gather", "runtime"),
    log:
        "results/logs/metrics_gather/{table}.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath metrics-gather --inputs {input:q} --out {output:q} --log {log:q}"


ALL_TARGETS += expand("results/metrics/{table}.parquet", table=METRIC_TABLES + ["cross_distances"])
