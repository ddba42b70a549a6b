# analysis stage (paper A): one long per-sample table from the traces and metric tables,
# the per-checkpoint curves, Table 1 with bootstrap CIs, the sustained-rise onset, paper A's
# figures, and the synthetic theory figure (fig 8).
import os

from grokpath.figures import PAPER_A_FIGURES

ANALYSIS_TRACES = expand(
    "results/traces/{ckpt}/{domain}_{split}.parquet", ckpt=CKPTS, domain=DOMAINS, split=["train", "validation"]
)


rule samples:
    input:
        traces=ANALYSIS_TRACES,
        eval_samples=expand("results/eval/{ckpt}/samples.parquet", ckpt=CKPTS),
        memorization="results/metrics/memorization.parquet",
        onset="results/metrics/onset.parquet",
        consistency="results/metrics/consistency.parquet",
        pathways="results/metrics/pathways.parquet",
    output:
        "results/metrics/samples.parquet",
    threads: res("samples", "threads")
    resources:
        mem_mb=res("samples", "mem_mb"),
        runtime=res("samples", "runtime"),
    log:
        "results/logs/samples/all.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath samples --traces {input.traces:q} --eval-samples {input.eval_samples:q}"
        " --memorization {input.memorization:q} --onset {input.onset:q} --consistency {input.consistency:q}"
        " --pathways {input.pathways:q} --out {output:q} --log {log:q}"


rule curves:
    input:
        samples="results/metrics/samples.parquet",
        distances="results/metrics/distances.parquet",
    output:
        "results/metrics/curves.parquet",
    params:
        cfg=cfg("analysis", "pathways"),
    threads: res("curves", "threads")
    resources:
        mem_mb=res("curves", "mem_mb"),
        runtime=res("curves", "runtime"),
    log:
        "results/logs/curves/all.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath curves --cfg {params.cfg:q} --samples {input.samples:q} --distances {input.distances:q}"
        " --out {output:q} --log {log:q}"


rule correlations:
    input:
        curves="results/metrics/curves.parquet",
        samples="results/metrics/samples.parquet",
        distances="results/metrics/distances.parquet",
    output:
        csv=report("results/tables/correlations.csv", caption="../report/paper_a/table1_correlations.rst", category="Paper A", subcategory="analysis"),
        md="results/tables/correlations.md",
    params:
        cfg=cfg("analysis", "pathways"),
    threads: res("correlations", "threads")
    resources:
        mem_mb=res("correlations", "mem_mb"),
        runtime=res("correlations", "runtime"),
    log:
        "results/logs/correlations/all.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath correlations --cfg {params.cfg:q} --curves {input.curves:q} --samples {input.samples:q}"
        " --distances {input.distances:q} --out-csv {output.csv:q} --out-md {output.md:q} --log {log:q}"


rule onset_table:
    input:
        samples="results/metrics/samples.parquet",
    output:
        report("results/tables/onset.csv", caption="../report/paper_a/table_onset.rst", category="Paper A", subcategory="analysis"),
    params:
        cfg=cfg("analysis"),
    threads: res("onset_table", "threads")
    resources:
        mem_mb=res("onset_table", "mem_mb"),
        runtime=res("onset_table", "runtime"),
    log:
        "results/logs/onset_table/all.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath onset-table --cfg {params.cfg:q} --samples {input.samples:q} --out {output:q} --log {log:q}"


rule figures_paper_a:
    input:
        curves="results/metrics/curves.parquet",
        samples="results/metrics/samples.parquet",
        distances="results/metrics/distances.parquet",
        cross_distances="results/metrics/cross_distances.parquet",
        groups="results/metrics/groups.parquet",
        ablation="results/metrics/memorization_ablation.parquet",
        correlations="results/tables/correlations.csv",
    output:
        **{
            name: report(
                f"results/figures/paper_a/{name}.png",
                caption=f"../report/paper_a/{name}.rst",
                category="Paper A",
                subcategory="analysis",
            )
            for name in PAPER_A_FIGURES
        },
        pdfs=expand("results/figures/paper_a/{name}.pdf", name=PAPER_A_FIGURES),
    params:
        cfg=cfg("analysis", "pathways", "figures"),
        out_dir=lambda wildcards, output: os.path.dirname(output.pdfs[0]),
    threads: res("figures_paper_a", "threads")
    resources:
        mem_mb=res("figures_paper_a", "mem_mb"),
        runtime=res("figures_paper_a", "runtime"),
    log:
        "results/logs/figures_paper_a/all.log",
    conda: "../../envs/plots.yaml"
    shell:
        "grokpath figures-a --cfg {params.cfg:q} --curves {input.curves:q} --samples {input.samples:q} --distances {input.distances:q}"
        " --cross-distances {input.cross_distances:q} --groups {input.groups:q} --ablation {input.ablation:q}"
        " --correlations {input.correlations:q} --out-dir {params.out_dir:q} --log {log:q}"


rule theory:
    output:
        table="results/metrics/theory.parquet",
        figure=report(
            "results/figures/paper_a/fig08_theory.png",
            caption="../report/paper_a/fig08_theory.rst",
            category="Paper A",
            subcategory="theory",
        ),
        pdf="results/figures/paper_a/fig08_theory.pdf",
    params:
        cfg=cfg("analysis", "figures"),
    threads: res("theory", "threads")
    resources:
        mem_mb=res("theory", "mem_mb"),
        runtime=res("theory", "runtime"),
    log:
        "results/logs/theory/all.log",
    conda: "../../envs/torch.yaml"
    shell:
        "grokpath theory --cfg {params.cfg:q} --out {output.table:q} --figure {output.figure:q} --log {log:q}"


ALL_TARGETS += [
    "results/metrics/samples.parquet",
    "results/metrics/curves.parquet",
    "results/tables/correlations.csv",
    "results/tables/correlations.md",
    "results/tables/onset.csv",
    "results/metrics/theory.parquet",
    "results/figures/paper_a/fig08_theory.png",
]
ALL_TARGETS += expand("results/figures/paper_a/{name}.{ext}", name=PAPER_A_FIGURES, ext=["png", "pdf"])
