# pretrain stage (checkpoints.source: mini): train the mini OLMoE, save every checkpoint,
# and run the online monitor (pathway metrics on a probe set) at each one.
# results/pretrain/state/ is deliberately not an output: it survives a killed job so the
# rerun resumes (see grokpath.pretrain).

if config["checkpoints"]["source"] == "mini":

    rule pretrain:
        input:
            data=expand("results/world/{domain}/train.jsonl", domain=DOMAINS),
            tokenizer_dir="results/tokenizer",
        output:
            checkpoints=[directory(f"results/checkpoints/{ckpt}") for ckpt in CKPTS],
            loss_path="results/pretrain/loss.parquet",
            monitor_path="results/pretrain/monitor.parquet",
        params:
            call="grokpath.pretrain:pretrain",
            cfg=cfg("world", "pretrain", "domains", "traces", "pathways", "consistency"),
            world_dir=lambda wildcards, input: os.path.dirname(os.path.dirname(input.data[0])),
            checkpoints_dir=lambda wildcards, output: os.path.dirname(output.checkpoints[0]),
            state_dir="results/pretrain/state",
        threads: config["pretrain"]["threads"]  # torch threads: the scheduler reserves what the job uses
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("pretrain", "mem_mb"),
            runtime=res("pretrain", "runtime"),
            gpu=res("pretrain", "gpu"),
        log:
            "results/logs/pretrain/all.log",
        benchmark:
            "results/benchmarks/pretrain/all.tsv"
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"

    rule monitor_figure:
        input:
            monitor_path="results/pretrain/monitor.parquet",
        output:
            png=report(
                "results/figures/paper_a/fig00_monitor.png",
                caption="../report/paper_a/monitor.rst",
                category="Paper A",
                subcategory="pretrain",
            ),
            pdf="results/figures/paper_a/fig00_monitor.pdf",
        params:
            call="grokpath.figures.monitor:write_monitor_figure",
            style=section("figures"),
        threads: res("monitor_figure", "threads")
        resources:
            mem_mb=res("monitor_figure", "mem_mb"),
            runtime=res("monitor_figure", "runtime"),
        log:
            "results/logs/monitor_figure/all.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"

    ALL_TARGETS += ["results/pretrain/loss.parquet", "results/figures/paper_a/fig00_monitor.png"]
