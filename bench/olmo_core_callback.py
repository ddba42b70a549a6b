"""The OLMo-core pathway-monitor callback on a GPU: rows recorded in training equal a direct computation.

A tiny OLMo-core MoE (tests/olmo_core_run.py: OLMo-core's OLMoE recipe at toy size, 2 layers,
8 experts, top-2) trains for ``--steps`` steps with OLMo-core's own ``Trainer`` on random word
sequences, saving a checkpoint every ``--save-every`` steps (``CheckpointerCallback``, plus the
pre-train save at step 0) with the experiment config beside each (``ConfigSaverCallback``), and
``grokpath.callbacks.OLMoCorePathwayMonitorCallback`` recording the monitor at every save.

Then each saved checkpoint is converted by grokpath's OLMo-core source (``grokpath.olmo_core.
convert_checkpoint``, with OLMo-core's own logits check ``validate: true``, which needs the GPU)
and the monitor is measured directly on the converted transformers model (``PathwayMonitor.measure``).
The script fails unless, for every saved step, the callback's row equals the direct one:
pathway distance exactly, the other columns within ``--atol``.

OLMo-core's MoE forward needs Triton kernels, so this needs a CUDA GPU. It has not been run
on one yet. Run (from the repo root, with the extra grokpath[olmo-core]):
    .venv/bin/python bench/olmo_core_callback.py --out /tmp/olmo_core_callback
Writes ``<out>/result.json`` (the row pairs, the largest difference per column, pass/fail).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny run's recipe and the word tokenizer, shared with the CPU tests

from conftest import word_tokenizer  # noqa: E402
from olmo_core_run import OLMO_CORE_VOCAB, tiny_moe_config, tokenizer_config  # noqa: E402

WORDS = [f"w{i}" for i in range(40)]
COLUMNS = ["pathway_distance", "consistency", "mean_cosine", "probe_loss", "token_entropy"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench/olmo_core_callback"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--save-every", type=int, default=2)
    parser.add_argument("--sequence-length", type=int, default=16)
    parser.add_argument("--atol", type=float, default=1e-4)
    return parser.parse_args()


def word_data(path: Path, tokenizer, n_docs: int, rng) -> None:
    """A uint16 token file of random word documents, each ending in eos (OLMo-core's numpy format)."""
    ids = []
    for _ in range(n_docs):
        words = rng.choice(WORDS, size=rng.integers(6, 14))
        ids += tokenizer(" ".join(words))["input_ids"] + [tokenizer.eos_token_id]
    np.asarray(ids, dtype=np.uint16).tofile(path)


def train(args, tokenizer, probes) -> Path:
    from olmo_core.data import NumpyDataLoaderConfig, NumpyFSLDatasetConfig
    from olmo_core.optim import AdamWConfig
    from olmo_core.train import Duration, TrainerConfig, prepare_training_environment, teardown_training_environment
    from olmo_core.train.callbacks import CheckpointerCallback, ConfigSaverCallback
    from olmo_core.train.train_module import TransformerTrainModuleConfig

    from grokpath.callbacks import OLMoCorePathwayMonitorCallback

    for key, value in {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29517",
    }.items():
        os.environ.setdefault(key, value)
    prepare_training_environment(seed=0)
    out = args.out
    tok_config = tokenizer_config(tokenizer)
    model_config = tiny_moe_config(len(tokenizer))
    word_data(out / "train.npy", tokenizer, 400, np.random.default_rng(0))
    dataset = NumpyFSLDatasetConfig(
        paths=[str(out / "train.npy")], sequence_length=args.sequence_length, tokenizer=tok_config, work_dir=str(out / "work")
    ).build()
    batch_tokens = 8 * args.sequence_length
    loader = NumpyDataLoaderConfig(global_batch_size=batch_tokens, seed=0, work_dir=str(out / "work")).build(dataset)
    model = model_config.build(init_device="meta")
    module = TransformerTrainModuleConfig(
        rank_microbatch_size=batch_tokens, max_sequence_length=args.sequence_length, optim=AdamWConfig(lr=1e-2)
    ).build(model, device=torch.device("cuda"))
    monitor = OLMoCorePathwayMonitorCallback(probes, tokenizer, out / "monitor", figure=False)
    trainer = (
        TrainerConfig(
            save_folder=str(out / "run"), max_duration=Duration.steps(args.steps), save_overwrite=True, metrics_collect_interval=1
        )
        .with_callback("checkpointer", CheckpointerCallback(save_interval=args.save_every))
        .with_callback("config_saver", ConfigSaverCallback())
        .with_callback("pathway_monitor", monitor)
        .build(module, loader)
    )
    trainer.callbacks["config_saver"].config = {
        "model": model_config.as_config_dict(),
        "dataset": {"tokenizer": tok_config.as_config_dict()},
    }
    trainer.fit()
    teardown_training_environment()
    return out / "monitor" / "monitor.parquet"


def direct_rows(args, tokenizer, probes) -> pd.DataFrame:
    from grokpath.checkpoints import checkpoint_names, checkpoint_step, load_model
    from grokpath.monitor import PathwayMonitor
    from grokpath.olmo_core import convert_checkpoint

    checkpoints = {"source": "olmo_core", "olmo_core": {"dir": str(args.out / "run"), "validate": True}}
    rows = []
    for ckpt in checkpoint_names({"checkpoints": checkpoints}):
        converted = convert_checkpoint(checkpoints, ckpt, args.out / "converted" / ckpt)
        model = load_model(converted, device="cuda")
        rows += PathwayMonitor(model, probes, tokenizer).measure(checkpoint_step(checkpoints, ckpt))
    return pd.DataFrame(rows)


def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available():
        print("bench/olmo_core_callback.py needs a CUDA GPU (OLMo-core's MoE forward uses Triton kernels)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer([*OLMO_CORE_VOCAB, *WORDS], bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>")
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(args.out / "run" / "tokenizer")  # where OLMo-core's conversion finds it
    rng = np.random.default_rng(1)
    probes = {d: [" ".join(rng.choice(WORDS, size=8)) for _ in range(6)] for d in ("first", "second")}
    recorded = pd.read_parquet(train(args, tokenizer, probes))
    direct = direct_rows(args, tokenizer, probes)
    joined = recorded.merge(direct, on=["step", "domain"], suffixes=("_callback", "_direct"), how="outer", indicator=True)
    both = joined["_merge"] == "both"
    differences = {c: float((joined.loc[both, f"{c}_callback"] - joined.loc[both, f"{c}_direct"]).abs().max()) for c in COLUMNS}
    passed = bool(
        both.all()
        and differences["pathway_distance"] == 0.0
        and all(differences[c] <= args.atol for c in COLUMNS if c != "pathway_distance")
    )
    result = {
        "passed": passed,
        "steps": sorted(int(s) for s in joined["step"].unique()),
        "max_abs_difference": differences,
        "atol": args.atol,
        "rows": json.loads(joined.drop(columns="_merge").to_json(orient="records")),
        "device": torch.cuda.get_device_name(0),
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
