# analysis stage (paper A): one long per-sample table from the traces and metric tables,
# the per-checkpoint curves, Table 1 with bootstrap CIs and its controls, the sustained-rise onset, paper A's
# figures, and the synthetic theory figure (fig 8). The mini study writes the tables and paper A's
# figures in one job (ONE_JOB_PER_STUDY), with the same files.
import os

from grokpath.figures import PAPER_A_FIGURES
from grokpath.metrics import METRIC_TABLES

# paper A's figures, each a report entry named after its file
PAPER_A_FIGURE_REPORTS = {
    name: report(
        f"results/figures/paper_a/{name}.png",
        caption=f"../report/paper_a/{name}.rst",
        category="Paper A",
        subcategory="analysis",
    )
    for name in PAPER_A_FIGURES
}
ANALYSIS_TRACES = expand(
    "results/traces/{ckpt}/{domain}_{split}.parquet", ckpt=CKPTS, domain=DOMAINS, split=["train", "validation"]
)


if ONE_JOB_PER_STUDY:

    rule analysis:
        input:
            trace_paths=ANALYSIS_TRACES,
            eval_paths=expand("results/eval/{ckpt}/samples.parquet", ckpt=CKPTS),
            metric_tables=expand("results/metrics/{table}.parquet", table=METRIC_TABLES),
            cross_distances="results/metrics/cross_distances.parquet",
        output:
            samples="results/metrics/samples.parquet",
            curves="results/metrics/curves.parquet",
            onset_csv=report("results/tables/onset.csv", caption="../report/paper_a/table_onset.rst", category="Paper A", subcategory="analysis"),
            correlations_csv=report("results/tables/correlations.csv", caption="../report/paper_a/table1_correlations.rst", category="Paper A", subcategory="analysis"),
            correlations_md="results/tables/correlations.md",
            controls_csv=report("results/tables/controls.csv", caption="../report/paper_a/table_controls.rst", category="Paper A", subcategory="analysis"),
            controls_md="results/tables/controls.md",
            controls_checkpoints="results/tables/controls_checkpoints.csv",
            **PAPER_A_FIGURE_REPORTS,
            pdfs=expand("results/figures/paper_a/{name}.pdf", name=PAPER_A_FIGURES),
        params:
            call="grokpath.analysis:run_analysis_study",
            cfg=cfg("analysis", "pathways", "figures"),
            metrics_dir=lambda wildcards, output: os.path.dirname(output.samples),
            tables_dir=lambda wildcards, output: os.path.dirname(output.correlations_csv),
            figures_dir=lambda wildcards, output: os.path.dirname(output.pdfs[0]),
        threads: res("analysis", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("analysis", "mem_mb"),
            runtime=res("analysis", "runtime"),
        log:
            "results/logs/analysis/all.log",
        benchmark:
            "results/benchmarks/analysis/all.tsv"
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"

else:

    rule samples:
        input:
            trace_paths=ANALYSIS_TRACES,
            eval_paths=expand("results/eval/{ckpt}/samples.parquet", ckpt=CKPTS),
            memorization_path="results/metrics/memorization.parquet",
            onset_path="results/metrics/onset.parquet",
            consistency_path="results/metrics/consistency.parquet",
            pathways_path="results/metrics/pathways.parquet",
        output:
            out_path="results/metrics/samples.parquet",
        params:
            call="grokpath.samples:write_samples",
        threads: res("samples", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("samples", "mem_mb"),
            runtime=res("samples", "runtime"),
        log:
            "results/logs/samples/all.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule curves:
        input:
            samples_path="results/metrics/samples.parquet",
            distances_path="results/metrics/distances.parquet",
        output:
            out_path="results/metrics/curves.parquet",
        params:
            call="grokpath.curves:write_curves",
            cfg=cfg("analysis", "pathways"),
        threads: res("curves", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("curves", "mem_mb"),
            runtime=res("curves", "runtime"),
        log:
            "results/logs/curves/all.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule correlations:
        input:
            curves_path="results/metrics/curves.parquet",
            samples_path="results/metrics/samples.parquet",
            distances_path="results/metrics/distances.parquet",
        output:
            out_csv=report("results/tables/correlations.csv", caption="../report/paper_a/table1_correlations.rst", category="Paper A", subcategory="analysis"),
            out_md="results/tables/correlations.md",
        params:
            call="grokpath.correlations:write_correlations",
            cfg=cfg("analysis", "pathways"),
        threads: res("correlations", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("correlations", "mem_mb"),
            runtime=res("correlations", "runtime"),
        log:
            "results/logs/correlations/all.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule controls:
        input:
            curves_path="results/metrics/curves.parquet",
            samples_path="results/metrics/samples.parquet",
            distances_path="results/metrics/distances.parquet",
            cross_distances_path="results/metrics/cross_distances.parquet",
        output:
            out_csv=report("results/tables/controls.csv", caption="../report/paper_a/table_controls.rst", category="Paper A", subcategory="analysis"),
            out_md="results/tables/controls.md",
            out_checkpoints="results/tables/controls_checkpoints.csv",
        params:
            call="grokpath.controls:write_controls",
            cfg=cfg("analysis", "pathways"),
        threads: res("controls", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("controls", "mem_mb"),
            runtime=res("controls", "runtime"),
        log:
            "results/logs/controls/all.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule onset_table:
        input:
            samples_path="results/metrics/samples.parquet",
        output:
            out_csv=report("results/tables/onset.csv", caption="../report/paper_a/table_onset.rst", category="Paper A", subcategory="analysis"),
        params:
            call="grokpath.rise:write_onset",
            cfg=cfg("analysis"),
        threads: res("onset_table", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("onset_table", "mem_mb"),
            runtime=res("onset_table", "runtime"),
        log:
            "results/logs/onset_table/all.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule figures_paper_a:
        input:
            curves_path="results/metrics/curves.parquet",
            samples_path="results/metrics/samples.parquet",
            distances_path="results/metrics/distances.parquet",
            cross_distances_path="results/metrics/cross_distances.parquet",
            groups_path="results/metrics/groups.parquet",
            ablation_path="results/metrics/memorization_ablation.parquet",
            correlations_path="results/tables/correlations.csv",
        output:
            **PAPER_A_FIGURE_REPORTS,
            pdfs=expand("results/figures/paper_a/{name}.pdf", name=PAPER_A_FIGURES),
        params:
            call="grokpath.figures.paper_a:write_paper_a_figures",
            cfg=cfg("analysis", "pathways", "figures"),
            out_dir=lambda wildcards, output: os.path.dirname(output.pdfs[0]),
        threads: res("figures_paper_a", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("figures_paper_a", "mem_mb"),
            runtime=res("figures_paper_a", "runtime"),
        log:
            "results/logs/figures_paper_a/all.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


rule theory:
    output:
        table_path="results/metrics/theory.parquet",
        figure_path=report(
            "results/figures/paper_a/fig08_theory.png",
            caption="../report/paper_a/fig08_theory.rst",
            category="Paper A",
            subcategory="theory",
        ),
        pdf="results/figures/paper_a/fig08_theory.pdf",
    params:
        call="grokpath.theory:write_theory",
        cfg=cfg("analysis", "figures"),
    threads: res("theory", "threads")
    resources:
        mem_mb=res("theory", "mem_mb"),
        runtime=res("theory", "runtime"),
    log:
        "results/logs/theory/all.log",
    conda: "../../envs/torch.yaml"
    script:
        "../scripts/step.py"


ALL_TARGETS += [
    "results/metrics/samples.parquet",
    "results/metrics/curves.parquet",
    "results/tables/correlations.csv",
    "results/tables/correlations.md",
    "results/tables/controls.csv",
    "results/tables/controls.md",
    "results/tables/controls_checkpoints.csv",
    "results/tables/onset.csv",
    "results/metrics/theory.parquet",
    "results/figures/paper_a/fig08_theory.png",
]
ALL_TARGETS += expand("results/figures/paper_a/{name}.{ext}", name=PAPER_A_FIGURES, ext=["png", "pdf"])


# the ground-truth pair test, only for a domain whose records carry skill labels (the mini world's skills domain)
from grokpath.world.skills import DOMAIN as SKILLS_DOMAIN

SKILL_DOMAINS = [SKILLS_DOMAIN] if config["checkpoints"]["source"] == "mini" and SKILLS_DOMAIN in DOMAINS else []
if SKILL_DOMAINS:

    rule skill_pairs:
        input:
            records_path="results/world/{domain}/train.jsonl",
            trace_paths=expand("results/traces/{ckpt}/{{domain}}_train.parquet", ckpt=CKPTS),
            curves_path="results/metrics/curves.parquet",
        output:
            out_csv=report("results/tables/skill_pairs_{domain}.csv", category="Paper A", subcategory="analysis"),
            out_summary="results/tables/skill_pairs_{domain}_summary.csv",
            out_md="results/tables/skill_pairs_{domain}.md",
        params:
            call="grokpath.controls:write_skill_pairs",
            cfg=cfg("analysis", "pathways", "traces"),
        threads: res("skill_pairs", "threads")
        resources:
            mem_mb=res("skill_pairs", "mem_mb"),
            runtime=res("skill_pairs", "runtime"),
        log:
            "results/logs/skill_pairs/{domain}.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"

    ALL_TARGETS += expand("results/tables/skill_pairs_{domain}{suffix}", domain=SKILL_DOMAINS, suffix=[".csv", "_summary.csv", ".md"])
