# circuits stage (paper B, Huang et al. 2024): one training job per grid cell with
# all its seeds batched (or one job for the whole sweep: circuits.one_job), then regime
# classification and figures. Independent of paper A, except the optional
# circuits_paper_a_regimes rule that labels paper A's domains.
from grokpath.circuits.sweep import sweep_runs
from grokpath.figures import PAPER_B_FIGURES

CIRCUIT_RUNS = [str(path) for _, path in sweep_runs(config["circuits"], "results/circuits/runs")]


wildcard_constraints:
    circuit_task="add|square|memorize",
    mix_task="mix|mix_split",
    d_h=r"\d+",
    D=r"\d+",
    n_layers=r"\d+",


if config["circuits"]["one_job"]:

    rule circuits_sweep:
        output:
            runs=CIRCUIT_RUNS,
        params:
            call="grokpath.circuits.sweep:train_sweep",
            circuits=section("circuits"),
        threads: res("circuits_train", "threads")
        priority: CRITICAL_PATH - 10  # the longest job off paper A's chain: the first free core after it
        resources:
            mem_mb=res("circuits_train", "mem_mb"),
            runtime=res("circuits_train", "runtime"),
            gpu=res("circuits_train", "gpu"),
        log:
            "results/logs/circuits_sweep/all.log",
        benchmark:
            "results/benchmarks/circuits_sweep/all.tsv"
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"

else:

    rule circuits_train:
        output:
            out="results/circuits/runs/{circuit_task}/dh{d_h}_D{D}.parquet",
        params:
            call="grokpath.circuits.sweep:train_cell",
            circuits=section("circuits"),
            task="{circuit_task}",
        threads: res("circuits_train", "threads")
        resources:
            mem_mb=res("circuits_train", "mem_mb"),
            runtime=res("circuits_train", "runtime"),
            gpu=res("circuits_train", "gpu"),
        log:
            "results/logs/circuits_train/{circuit_task}_dh{d_h}_D{D}.log",
        benchmark:
            "results/benchmarks/circuits_train/{circuit_task}_dh{d_h}_D{D}.tsv"
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"


    rule circuits_train_mix:
        output:
            out="results/circuits/runs/{mix_task}/L{n_layers}_dh{d_h}_D{D}.parquet",
        params:
            call="grokpath.circuits.sweep:train_cell",
            circuits=section("circuits"),
            task="{mix_task}",
        threads: res("circuits_train", "threads")
        resources:
            mem_mb=res("circuits_train", "mem_mb"),
            runtime=res("circuits_train", "runtime"),
            gpu=res("circuits_train", "gpu"),
        log:
            "results/logs/circuits_train_mix/{mix_task}_L{n_layers}_dh{d_h}_D{D}.log",
        benchmark:
            "results/benchmarks/circuits_train_mix/{mix_task}_L{n_layers}_dh{d_h}_D{D}.tsv"
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"


rule circuits_classify:
    input:
        run_paths=CIRCUIT_RUNS,
    output:
        out="results/circuits/regimes.parquet",
    params:
        call="grokpath.circuits.sweep:classify_files",
        circuits=section("circuits"),
    threads: res("circuits_classify", "threads")
    resources:
        mem_mb=res("circuits_classify", "mem_mb"),
        runtime=res("circuits_classify", "runtime"),
    log:
        "results/logs/circuits_classify/all.log",
    conda: "../../envs/plots.yaml"
    script:
        "../scripts/step.py"


rule circuits_figures:
    input:
        regimes_path="results/circuits/regimes.parquet",
        run_paths=CIRCUIT_RUNS,
    output:
        outs=[
            report(
                f"results/figures/paper_b/{name}.png",
                caption=f"../report/paper_b/{name}.rst",
                category="Paper B",
                subcategory=subcategory,
            )
            for name, subcategory in PAPER_B_FIGURES.items()
        ],
        pdf=[f"results/figures/paper_b/{name}.pdf" for name in PAPER_B_FIGURES],
    params:
        call="grokpath.circuits.sweep:write_figures",
        circuits=section("circuits"),
        style=section("figures"),
    threads: res("circuits_figures", "threads")
    resources:
        mem_mb=res("circuits_figures", "mem_mb"),
        runtime=res("circuits_figures", "runtime"),
    log:
        "results/logs/circuits_figures/all.log",
    conda: "../../envs/plots.yaml"
    script:
        "../scripts/step.py"


# Paper A's domains labelled with the same rule (a separate rule: paper B never waits for paper A).
rule circuits_paper_a_regimes:
    input:
        curves_path="results/metrics/curves.parquet",
    output:
        out="results/circuits/paper_a_regimes.parquet",
    params:
        call="grokpath.circuits.sweep:classify_paper_a_file",
        circuits=section("circuits"),
    threads: res("circuits_paper_a_regimes", "threads")
    resources:
        mem_mb=res("circuits_paper_a_regimes", "mem_mb"),
        runtime=res("circuits_paper_a_regimes", "runtime"),
    log:
        "results/logs/circuits_paper_a_regimes/all.log",
    conda: "../../envs/plots.yaml"
    script:
        "../scripts/step.py"


ALL_TARGETS += ["results/circuits/regimes.parquet"]
ALL_TARGETS += expand("results/figures/paper_b/{name}.{ext}", name=PAPER_B_FIGURES, ext=["png", "pdf"])
if config["circuits"]["regimes"]["paper_a"]:
    ALL_TARGETS += ["results/circuits/paper_a_regimes.parquet"]
