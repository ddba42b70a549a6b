"""Tiny random models of the nine MoE architectures with a router adapter (grokpath.routing).

Each is 3 decoder layers, hidden 32, 8 experts; where the architecture has dense layers
(Qwen2-MoE ``mlp_only_layers``, Qwen3-MoE ``decoder_sparse_step``, DeepSeek
``first_k_dense_replace``) one of them is dense, so real layer indices are exercised.
"""

from __future__ import annotations

VOCAB = 40
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=64,
    num_experts_per_tok=2,
)
_DEEPSEEK = dict(
    n_routed_experts=8,
    moe_intermediate_size=24,
    n_shared_experts=1,
    first_k_dense_replace=1,
    kv_lora_rank=16,
    q_lora_rank=None,
    qk_rope_head_dim=8,
    qk_nope_head_dim=8,
    v_head_dim=8,
    n_group=4,
    topk_group=2,
)
SPECS = {  # model_type -> (config class, model class, config kwargs, dense layers)
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM", dict(num_experts=8), []),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(num_local_experts=8), []),
    "qwen2_moe": (
        "Qwen2MoeConfig",
        "Qwen2MoeForCausalLM",
        dict(num_experts=8, moe_intermediate_size=24, shared_expert_intermediate_size=24, mlp_only_layers=[1]),
        [1],
    ),
    "qwen3_moe": (
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        dict(num_experts=8, moe_intermediate_size=24, decoder_sparse_step=2, head_dim=8, num_hidden_layers=4),
        [0, 2],
    ),
    "deepseek_v2": ("DeepseekV2Config", "DeepseekV2ForCausalLM", dict(_DEEPSEEK, topk_method="group_limited_greedy"), [0]),
    "deepseek_v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM", dict(_DEEPSEEK, norm_topk_prob=True), [0]),
    "granitemoe": ("GraniteMoeConfig", "GraniteMoeForCausalLM", dict(num_local_experts=8), []),
    "jetmoe": ("JetMoeConfig", "JetMoeForCausalLM", dict(num_local_experts=8, kv_channels=8, num_key_value_heads=2), []),
    "phimoe": ("PhimoeConfig", "PhimoeForCausalLM", dict(num_local_experts=8), []),
}
ARCHITECTURES = list(SPECS)


def tiny_config(model_type: str, **overrides):
    import transformers

    config_cls, _, kwargs, _ = SPECS[model_type]
    kwargs = {**COMMON, **kwargs, **overrides}
    if model_type == "jetmoe":
        kwargs.pop("num_attention_heads")  # JetMoE derives it (kv heads × top-k)
    return getattr(transformers, config_cls)(**kwargs)


def tiny_moe(model_type: str, seed: int = 0, **overrides):
    """A seeded random causal LM of ``model_type``, in eval mode, float32."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, SPECS[model_type][1])(tiny_config(model_type, **overrides))
    with torch.no_grad():  # some architectures initialise routers to zeros; random rows give distinct routing
        for name, param in model.named_parameters():
            if name.endswith(("gate.weight", "router.weight", "router.layer.weight")):
                param.normal_(0, 0.5)
    return model.eval()


def dense_layers(model_type: str) -> list[int]:
    return SPECS[model_type][3]


def train_with_callback(
    model,
    train: list[dict],
    callback,
    output_dir,
    *,
    max_steps: int,
    batch_size: int,
    lr: float = 5e-5,
    save_steps: int | None = 2,
    **extra,
):
    """A few CPU steps of HF ``Trainer`` with ``callback``, saving every ``save_steps`` (None: no saves); no reports, no tqdm."""
    from transformers import Trainer, TrainingArguments

    saving = {"save_steps": save_steps} if save_steps else {"save_strategy": "no"}
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        **saving,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        report_to=[],
        use_cpu=True,
        logging_steps=100,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=train, callbacks=[callback], **extra).train()
