"""OLMo-core run directories as a checkpoint source, and OLMo-core's native MoE routers.

Needs the extra ``grokpath[olmo-core]`` (ai2-olmo-core); importing this module does not: the
``olmo_core`` package is imported only by the functions that use it.

How OLMo-core writes checkpoints (ai2-olmo-core 3.0.0, the files cited are in its package):

- ``olmo_core/train/checkpoint.py`` (``Checkpointer``): the trainer's save folder holds one
  directory per checkpoint, ``step<N>`` (``CHECKPOINT_DIR = "step{step}"``, not zero-padded),
  written as ``step<N>-tmp`` and renamed when complete. Inside: ``model_and_optim/`` (a
  ``torch.distributed.checkpoint`` directory: ``.metadata`` plus ``__<rank>_<i>.distcp`` shards,
  keys ``model.*`` and ``optim.*``), ``train/rank<r>.pt`` (trainer state) and ``.metadata.json``
  (``CheckpointMetadata``: ``ephemeral``, the OLMo-core ``version`` that wrote it).
  ``Checkpointer.dir_is_checkpoint`` counts a directory as a checkpoint when
  ``train/rank0.pt``, ``model_and_optim/.metadata`` and ``.metadata.json`` all exist;
  :func:`discover_checkpoints` applies the same rule (without importing OLMo-core at DAG build).
- ``olmo_core/train/callbacks/config_saver.py`` (``ConfigSaverCallback.post_checkpoint_saved``):
  the experiment config is written to ``step<N>/config.json``; ``model`` is the
  ``TransformerConfig`` and ``dataset.tokenizer`` the ``TokenizerConfig``
  (``olmo_core/nn/hf/convert_checkpoint.py``: ``load_config``; ``olmo_core/train/callbacks/hf_converter.py``
  reads the same two keys).
- ``olmo_core/nn/hf/convert_checkpoint.py`` (``convert_checkpoint_to_hf``): OLMo-core's conversion
  of one such directory to transformers format. It builds the model from the config, loads
  ``model_and_optim/`` (``olmo_core/distributed/checkpoint/__init__.py``:
  ``load_model_and_optim_state``), reshapes dropless-MoE expert weights, exports the tokenizer
  losslessly (``olmo_core/nn/hf/tokenizer.py``: an explicit tokenizer, else ``<run dir>/tokenizer``,
  else the config's ``identifier``; its size must equal ``dataset.tokenizer.vocab_size``), saves
  through ``save_hf_model`` (``olmo_core/nn/hf/checkpoint.py``) and fixes ``config.json``'s token ids
  and ``max_position_embeddings``. An MoE model becomes transformers' ``flex_olmo``
  (``olmo_core/nn/hf/config.py``: ``_get_flex_olmo_config``), its routers
  ``blocks.<i>.feed_forward_moe.router.weight`` -> ``model.layers.<i>.mlp.gate.weight``
  (``olmo_core/nn/hf/convert.py``: ``OLMO_CORE_TO_HF_TEMPLATE_MAPPINGS``).

:func:`convert_checkpoint` runs that conversion unchanged except for one step:
``save_hf_model`` builds the transformers model empty and loads OLMo-core's per-expert keys
(``mlp.experts.<e>.gate_proj.weight``) straight into it, which transformers 5's fused experts
(``mlp.experts.gate_up_proj``) reject. :func:`_save_hf_model` keeps OLMo-core's key map
(``convert_state_to_hf``) and lets ``from_pretrained`` read those keys instead, through
transformers' own checkpoint conversion (``transformers/conversion_mapping.py``: ``flex_olmo`` uses
``qwen2_moe``'s expert fusion), refusing any missing, unexpected or mismatched key.

The native router (``olmo_core/nn/moe/router.py``: ``MoELinearRouter``) keeps its weight flat,
``(num_experts * d_model,)``, viewed as ``(num_experts, d_model)``; its forward returns
``(expert_weights, expert_indices, batch_size_per_expert, aux_loss)`` but not its logits, so
:func:`read_router` recomputes them from the router's input with ``get_expert_logits``. Scores are
the softmax (or, with ``gating_function: sigmoid``, the sigmoid) of the logits; with ``bias_gamma``
the picks use ``score + score_bias`` and the weights the unbiased score (as DeepSeek-V3).
:class:`OLMoCoreCausalLM` lets grokpath's trace and monitor code run an OLMo-core model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from grokpath.checkpoints import CheckpointError, model_config_hash, verify_checkpoint_dir, weight_files
from grokpath.io import config_hash, provenance, write_json
from grokpath.routing import Routed

log = logging.getLogger(__name__)

MODEL_TYPE = "olmo_core"  # the router adapter's name (grokpath.routing.ADAPTERS)
STEP_DIR_RE = re.compile(r"^step(?P<step>\d+)$")  # Checkpointer.CHECKPOINT_DIR
# The files Checkpointer.dir_is_checkpoint requires of a complete checkpoint directory.
CHECKPOINT_FILES = ("train/rank0.pt", "model_and_optim/.metadata", ".metadata.json")
EXPERIMENT_CONFIG = "config.json"  # ConfigSaverCallback.fname
ROUTER_KEY_RE = re.compile(r"^model\.blocks\.(?P<layer>\d+)\.feed_forward_moe\.router\.weight$")
DTYPES = {"float32", "bfloat16", "float16"}


def require_olmo_core():
    """The ``olmo_core`` package, or a one-line error naming the extra."""
    try:
        import olmo_core
    except ImportError as err:
        raise ImportError(
            f"OLMo-core is not installed ({err}): install grokpath's extra, pip install -e '.[olmo-core]'"
        ) from None
    return olmo_core


# ---------------------------------------------------------------- run directories
def run_dir(checkpoints: dict) -> Path:
    directory = (checkpoints.get("olmo_core") or {}).get("dir")
    if not directory:
        raise CheckpointError("checkpoints.olmo_core.dir is not set (needed for checkpoints.source: olmo_core)")
    return Path(directory)


def missing_files(step_dir: Path) -> list[str]:
    """What ``step_dir`` lacks of a complete OLMo-core checkpoint (empty: complete)."""
    return [name for name in CHECKPOINT_FILES if not (step_dir / name).is_file()]


def discover_checkpoints(directory: Path | str) -> list[str]:
    """The complete ``step<N>`` checkpoint directories of an OLMo-core save folder.

    Step directories that are not complete checkpoints (a save still running, a crash) are
    skipped with a warning that names and counts them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoints.olmo_core.dir '{directory}' is not a directory")
    names, incomplete = [], []
    for path in sorted(directory.iterdir()):
        if not (path.is_dir() and STEP_DIR_RE.match(path.name)):
            continue
        lacking = missing_files(path)
        if lacking:
            incomplete.append(f"{path.name} (no {lacking[0]})")
        else:
            names.append(path.name)
    if incomplete:
        log.warning(
            "checkpoints.olmo_core.dir '%s': skipped %d step directory(ies) that are not complete OLMo-core checkpoints: %s",
            directory,
            len(incomplete),
            ", ".join(incomplete),
        )
    if not names:
        raise CheckpointError(
            f"checkpoints.olmo_core.dir '{directory}' holds no OLMo-core checkpoint (step<N>/ with {', '.join(CHECKPOINT_FILES)})"
        )
    return names


def checkpoint_source_dir(checkpoints: dict, ckpt: str) -> Path:
    """The OLMo-core directory of checkpoint ``ckpt`` (``<dir>/step<N>``)."""
    return run_dir(checkpoints) / ckpt


def read_experiment_config(step_dir: Path) -> tuple[dict, dict]:
    """(model config, tokenizer config) from ``step<N>/config.json``, with one-line errors naming the file."""
    path = step_dir / EXPERIMENT_CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"OLMo-core checkpoint '{step_dir}' has no {EXPERIMENT_CONFIG} (OLMo-core's ConfigSaverCallback writes it); "
            "it is needed to rebuild the model"
        )
    try:
        with open(path) as fh:
            experiment = json.load(fh)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not JSON: {err}") from None
    model = experiment.get("model") if isinstance(experiment, dict) else None
    tokenizer = (experiment.get("dataset") or {}).get("tokenizer") if isinstance(experiment, dict) else None
    if not isinstance(model, dict):
        raise CheckpointError(f"{path} has no 'model' section: not an OLMo-core experiment config")
    if not isinstance(tokenizer, dict):
        raise CheckpointError(f"{path} has no 'dataset.tokenizer' section (OLMo-core's TokenizerConfig: vocab_size, token ids)")
    return model, tokenizer


# ---------------------------------------------------------------- conversion
def _save_hf_model(
    save_dir,
    model_state_dict: dict,
    model,
    huggingface_tokenizer=None,
    *,
    dtype=None,
    vocab_size: int | None = None,
    process_group=None,
    work_dir=None,
    save_overwrite: bool = False,
) -> None:
    """Stands in for OLMo-core's ``save_hf_model`` (same arguments): OLMo-core's HF config and key
    map, the tensors materialized by transformers' ``from_pretrained`` (see the module docstring)."""
    from olmo_core.distributed.utils import get_full_tensor
    from olmo_core.nn.hf.config import get_hf_config
    from olmo_core.nn.hf.convert import convert_state_to_hf
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    del process_group, work_dir, save_overwrite  # single process, local directory
    hf_config = get_hf_config(model)
    state = {key: get_full_tensor(value) for key, value in model_state_dict.items()}
    if dtype is not None:
        state = {key: value.to(dtype=dtype.as_pt()) for key, value in state.items()}
    hf_state = convert_state_to_hf(hf_config, state)  # OLMo-core's key map
    save_dir = Path(save_dir)
    with tempfile.TemporaryDirectory(prefix=".olmo_core_keys.", dir=save_dir.parent) as staging:
        hf_config.save_pretrained(staging)
        save_file({key: value.contiguous() for key, value in hf_state.items()}, os.path.join(staging, "model.safetensors"))
        hf_model, info = AutoModelForCausalLM.from_pretrained(
            staging, dtype=next(iter(hf_state.values())).dtype, output_loading_info=True, trust_remote_code=False
        )
    problems = {kind: sorted(map(str, keys)) for kind, keys in info.items() if kind != "error_msgs" and keys}
    if problems:
        raise CheckpointError(f"OLMo-core's HF state does not load into {type(hf_model).__name__}: {problems}")
    # As save_hf_model: the tokenizer's vocabulary size and special token ids.
    hf_model.config.vocab_size = vocab_size or model.vocab_size
    hf_model.resize_token_embeddings(hf_model.config.vocab_size)
    if huggingface_tokenizer is not None:
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(huggingface_tokenizer, name)
            setattr(hf_model.config, name, value)
            setattr(hf_model.generation_config, name, value)
    hf_model.save_pretrained(save_dir)


@contextlib.contextmanager
def _transformers_materialization():
    """OLMo-core's ``convert_checkpoint_to_hf`` with :func:`_save_hf_model` as its saver, restored after."""
    from olmo_core.nn.hf import convert_checkpoint as conversion

    original = conversion.save_hf_model
    conversion.save_hf_model = _save_hf_model
    try:
        yield conversion.convert_checkpoint_to_hf
    finally:
        conversion.save_hf_model = original


def native_router_weights(model_and_optim: Path | str) -> dict[int, torch.Tensor]:
    """layer -> the (K, d) router weight stored in an OLMo-core ``model_and_optim/`` directory."""
    from olmo_core.distributed.checkpoint import get_checkpoint_metadata, load_keys

    keys = sorted(
        (key for key in get_checkpoint_metadata(str(model_and_optim)).state_dict_metadata if ROUTER_KEY_RE.match(key)),
        key=lambda key: int(ROUTER_KEY_RE.match(key).group("layer")),
    )
    if not keys:
        raise CheckpointError(
            f"OLMo-core checkpoint {model_and_optim} has no MoE router (model.blocks.<i>.feed_forward_moe.router)"
        )
    return {
        int(ROUTER_KEY_RE.match(key).group("layer")): weight for key, weight in zip(keys, load_keys(str(model_and_optim), keys))
    }


def check_router_weights(hf_dir: Path, model_and_optim: Path, label: str) -> list[int]:
    """Each converted router (read by grokpath's adapter for the HF model) equals OLMo-core's; returns the layers."""
    from grokpath.checkpoints import load_model
    from grokpath.routing import find_routers, router_weights

    native = native_router_weights(model_and_optim)
    model = load_model(hf_dir)
    layers = find_routers(model).layers
    converted = torch.from_numpy(router_weights(model))
    if layers != sorted(native):
        raise CheckpointError(f"{label}: converted router layers {layers} differ from OLMo-core's {sorted(native)}")
    for row, layer in enumerate(layers):
        expected = native[layer].float()
        expected = expected.view(converted.shape[1], converted.shape[2])
        if not torch.equal(converted[row], expected.to(converted.dtype)):
            raise CheckpointError(f"{label}: converted router of layer {layer} differs from OLMo-core's")
    return layers


def files_sha256(directory: Path, files: list[Path]) -> dict[str, str]:
    hashes = {}
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
        hashes[str(path.relative_to(directory))] = digest.hexdigest()
    return hashes


def weights_digest(hashes: dict[str, str]) -> str:
    """One sha256 over the weight files' (name, sha256) pairs: the converted checkpoint's identity."""
    return hashlib.sha256("".join(f"{name} {sha}\n" for name, sha in sorted(hashes.items())).encode()).hexdigest()


def convert_checkpoint(checkpoints: dict, ckpt: str, out_dir: Path | str, threads: int | None = None) -> Path:
    """Convert OLMo-core checkpoint ``<checkpoints.olmo_core.dir>/<ckpt>`` to an HF directory ``out_dir``.

    OLMo-core's ``convert_checkpoint_to_hf`` does the work (see the module docstring); the converted
    routers are then checked equal to OLMo-core's. ``provenance.json`` records the step (from the
    directory name), the source directory and the OLMo-core version that wrote it, and
    ``revision_sha``: a sha256 over the converted weight files, which keys every later result.
    The directory appears only when complete (built in a hidden sibling, then renamed).
    """
    require_olmo_core()
    from olmo_core.config import DType
    from olmo_core.version import VERSION

    from grokpath.checkpoints import checkpoint_step
    from grokpath.devices import use_threads

    use_threads(threads)
    settings = checkpoints.get("olmo_core") or {}
    source = checkpoint_source_dir(checkpoints, ckpt)
    lacking = missing_files(source) if source.is_dir() else ["the directory itself"]
    if lacking:
        raise CheckpointError(f"'{source}' is not a complete OLMo-core checkpoint: no {lacking[0]}")
    try:
        step = checkpoint_step(checkpoints, ckpt)
    except ValueError as err:
        raise CheckpointError(f"checkpoints.olmo_core: {err}") from None
    model_config, tokenizer_config = read_experiment_config(source)
    dtype = settings.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise CheckpointError(f"checkpoints.olmo_core.dtype '{dtype}' is not one of {sorted(DTYPES)}")
    validate = bool(settings.get("validate", False))
    if validate and not torch.cuda.is_available():
        raise CheckpointError(
            "checkpoints.olmo_core.validate runs OLMo-core's MoE forward, which needs a GPU (Triton kernels); "
            "set it to false on a CPU machine (the converted routers are checked either way)"
        )
    with open(source / ".metadata.json") as fh:
        written_by = json.load(fh)

    out_dir = Path(out_dir)
    partial = out_dir.with_name(f".{out_dir.name}.convert")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting OLMo-core checkpoint %s (step %d) with OLMo-core %s into %s", source, step, VERSION, partial)
    with _transformers_materialization() as convert_checkpoint_to_hf:
        try:
            convert_checkpoint_to_hf(
                source,
                partial,
                dict(model_config),
                dict(tokenizer_config),
                dtype=DType(dtype) if dtype else None,
                tokenizer_id=settings.get("tokenizer"),
                max_sequence_length=settings.get("max_sequence_length"),
                validate=validate,
            )
        except CheckpointError:
            raise
        except (ValueError, RuntimeError, NotImplementedError, OSError) as err:
            first_line = (str(err).splitlines() or [""])[0]
            raise CheckpointError(
                f"OLMo-core could not convert checkpoint '{source}': {type(err).__name__}: {first_line}"
            ) from None
    verify_checkpoint_dir(partial, label=f"{source} converted")
    layers = check_router_weights(partial, source / "model_and_optim", str(source))
    hashes = files_sha256(partial, weight_files(partial))
    write_json(
        provenance(
            step=step,
            source="olmo_core",
            revision=ckpt,
            revision_sha=weights_digest(hashes),
            run_dir=str(run_dir(checkpoints).resolve()),
            checkpoint_dir=str(source.resolve()),
            written_by_olmo_core=written_by.get("version"),
            ephemeral=written_by.get("ephemeral"),
            converted_by_olmo_core=VERSION,
            olmo_core_model_config_hash=config_hash(model_config),
            router_layers_checked=layers,
            files=hashes,
            config_hash=model_config_hash(partial),
        ),
        partial / "provenance.json",
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
    log.info("converted %s -> %s (routers of layers %s equal OLMo-core's)", source, out_dir, layers)
    return out_dir


# ---------------------------------------------------------------- the native router (grokpath.routing adapter)
def read_router(module: nn.Module, packed) -> Routed:
    """One ``MoELinearRouter`` call as :class:`~grokpath.routing.Routed`; ``packed`` is ``(inputs, output)``
    (the adapter has ``reads_input``): logits recomputed from the input, picks and weights as returned."""
    inputs, output = packed
    hidden = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    logits = module.get_expert_logits(hidden).float()
    weights, indices = output[0], output[1]
    k = indices.shape[-1]
    return Routed(logits.reshape(-1, module.num_experts), indices.reshape(-1, k).long(), weights.reshape(-1, k).float())


def full_distribution(module: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """(K, N): the router's scores over all experts (softmax; sigmoid scores normalized to sum 1)."""
    gating = str(getattr(module, "gating_function", "softmax"))
    if gating == "softmax":
        return torch.softmax(logits.T, dim=0)
    if gating == "sigmoid":
        scores = torch.sigmoid(logits.T) + 1e-7  # as MoERouter.forward
        return scores / scores.sum(0, keepdim=True)
    raise ValueError(f"OLMo-core router gating_function '{gating}' is not supported (softmax, sigmoid)")


def router_weight(module: nn.Module) -> torch.Tensor:
    """The router's (K, d) matrix: its flat weight, gathered when sharded (DTensor), viewed (K, d)."""
    weight = module.weight
    if hasattr(weight, "full_tensor"):
        weight = weight.full_tensor()
    return weight.view(module.num_experts, module.d_model)


class OLMoCoreCausalLM(nn.Module):
    """An OLMo-core ``Transformer`` where grokpath expects a transformers causal LM.

    ``config.model_type`` is ``olmo_core`` (the native router adapter), decoder layer ``i`` is
    ``layers.<i>`` (OLMo-core's ``blocks.<i>``; blocks without ``feed_forward_moe`` are dense
    layers), and ``forward(input_ids, attention_mask)`` returns ``.logits``. OLMo-core's forward
    takes no attention mask: padding must be on the right, where causal attention keeps it out of
    every real token's logits (left padding is refused).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.layers = model.blocks  # registered first: module names read layers.<i>.feed_forward_moe.router
        self.olmo_core = model
        routers = [block.feed_forward_moe.router for block in model.blocks.values() if hasattr(block, "feed_forward_moe")]
        if not routers:
            raise ValueError(f"{type(model).__name__} has no MoE block (blocks.<i>.feed_forward_moe)")
        self.config = SimpleNamespace(
            model_type=MODEL_TYPE, num_hidden_layers=len(model.blocks), num_experts_per_tok=int(routers[0].top_k)
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        from transformers.modeling_outputs import CausalLMOutput

        if attention_mask is not None:
            mask = attention_mask.long()
            if (mask[:, 1:] > mask[:, :-1]).any():
                raise ValueError("OLMoCoreCausalLM: padding must be on the right (tokenizer.padding_side = 'right')")
        return CausalLMOutput(logits=self.olmo_core(input_ids))
