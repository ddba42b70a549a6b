# world stage (checkpoints.source: mini): the seeded mini corpus and its word-level tokenizer.

if config["checkpoints"]["source"] == "mini":

    rule world:
        output:
            data=expand("results/world/{domain}/{split}.jsonl", domain=DOMAINS, split=SPLITS),
            manifest="results/world/manifest.json",
            tokenizer_dir=directory("results/tokenizer"),
        params:
            call="grokpath.world:build_world",
            cfg=cfg("world", "domains"),
            out_dir=subpath(output.manifest, parent=True),
        # pretraining's cores from the start: Snakemake keeps no core free for a waiting
        # multi-thread job, so the circuits jobs would take them and pretraining would wait
        threads: config["pretrain"]["threads"]
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("world", "mem_mb"),
            runtime=res("world", "runtime"),
        log:
            "results/logs/world/all.log",
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"

    ALL_TARGETS += ["results/world/manifest.json"]
