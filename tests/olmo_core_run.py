"""A tiny OLMo-core MoE run directory, written the way OLMo-core writes one (tests and bench).

Checkpoints are saved by OLMo-core's own ``Checkpointer`` from a real ``TransformerTrainModule``
(``step<N>/model_and_optim/``, ``train/rank0.pt``, ``.metadata.json``) and the experiment config
by ``Checkpointer.write_file`` into ``step<N>/config.json``, as ``ConfigSaverCallback`` does.
OLMo-core's MoE forward needs Triton kernels (a GPU), so on the CPU the checkpoints of one run
differ by a seeded change of the weights instead of training steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

OLMO_CORE_VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>"]


def tiny_moe_config(vocab_size: int, *, d_model: int = 32, n_layers: int = 2, n_heads: int = 4, experts: int = 8, top_k: int = 2):
    """OLMo-core's OLMoE-1B-7B recipe (dropless MoE, reordered norm, QK norm) at toy size."""
    from olmo_core.nn.transformer import TransformerConfig

    config = TransformerConfig.olmoe_1B_7B(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads)
    moe = config.block.feed_forward_moe
    moe.num_experts, moe.hidden_size, moe.router.top_k = experts, d_model // 2, top_k
    return config


def tokenizer_config(tokenizer):
    from olmo_core.data.tokenizer import TokenizerConfig

    return TokenizerConfig(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def build(config, seed: int = 0):
    """The model and a TransformerTrainModule around it (AdamW), on the CPU."""
    from olmo_core.optim import AdamWConfig
    from olmo_core.train.train_module import TransformerTrainModuleConfig

    torch.manual_seed(seed)
    model = config.build(init_device="cpu")
    model.init_weights(device=torch.device("cpu"))
    module = TransformerTrainModuleConfig(rank_microbatch_size=64, max_sequence_length=32, optim=AdamWConfig(lr=1e-3)).build(
        model
    )
    return model, module


def save_checkpoint(run_dir: Path, step: int, module, experiment: dict, work_dir: Path) -> Path:
    """``run_dir/step<step>/`` as OLMo-core's Checkpointer and ConfigSaverCallback write it."""
    from olmo_core.train.checkpoint import Checkpointer

    checkpointer = Checkpointer(work_dir=work_dir)
    path = Path(run_dir) / Checkpointer.checkpoint_dirname(step)
    checkpointer.save(path, module, {"global_step": step})
    checkpointer.write_file(path, "config.json", json.dumps(experiment))
    return path


def write_run(run_dir: Path, tokenizer, steps: list[int], seed: int = 0, **model_kwargs):
    """A run directory with a checkpoint at each of ``steps`` (and the tokenizer in ``run_dir/tokenizer``,
    where OLMo-core's conversion looks for it). Returns the model as saved at the last step."""
    run_dir = Path(run_dir)
    config = tiny_moe_config(len(tokenizer), **model_kwargs)
    experiment = {"model": config.as_config_dict(), "dataset": {"tokenizer": tokenizer_config(tokenizer).as_config_dict()}}
    model, module = build(config, seed)
    tokenizer.save_pretrained(run_dir / "tokenizer")
    generator = torch.Generator().manual_seed(seed)
    for i, step in enumerate(steps):
        if i:
            with torch.no_grad():
                for param in model.parameters():
                    param.add_(0.05 * torch.randn(param.shape, generator=generator))
        save_checkpoint(run_dir, step, module, experiment, run_dir / ".work")
    return model
