"""Routing traces: per-sample loss and token-mean routing weights, one forward pass per batch.

:func:`trace_pass` is the shared primitive (the monitor calls it too); routers are read through
``grokpath.routing`` (one adapter per architecture, the only router capture of the project);
:func:`sample_losses`, :func:`sample_exact_match`, :func:`answer_starts` and :func:`answer_mask`
are the project's one per-sample loss and one prompt/answer split (pretraining uses them too);
:func:`run_traces` loads one checkpoint once and writes every (domain, split) file:
``<out>/<domain>_<split>.parquet`` (schema below), optionally
``<out>/<domain>_<split>.tokens.parquet`` (per-token top-k), and ``<out>/router_weights.npy``.

Trace Parquet, one row per sample, sorted by sample_id:
sample_id, domain, split (dictionary strings), ckpt (string), step (int64),
revision_sha (string, nullable), n_tokens (int32: real tokens after truncation),
loss (float32: mean next-token NLL over the n_tokens - 1 predictions with
``traces.loss_on: all``; with ``target``, over the tokens after the prompt only,
i.e. the target and the closing newline of ``text == prompt + target + "\n"``),
routing (fixed_size_list<float32>[L*K], layer-major token-mean routing weights; the L
routed layers in decoder order, their real indices in the metadata key ``layers``, the
decoder layers without a router in ``dense_layers``); with ``traces.positions`` naming
``answer``, also routing_answer (same type): the routing distribution at the last prompt
token alone, the position whose output predicts the first answer token
(:func:`answer_positions`); naming ``steps``, routing_steps (list<fixed_size_list<float32>[L*K]>):
one distribution per entry of the record's ``step_offsets``, at the token before that
character, the position whose output predicts the step's first token (:func:`step_positions`).
A token mean mixes in which template tokens a text is made of; routing at chosen positions does not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from tqdm import tqdm

from grokpath import __version__
from grokpath.checkpoints import (
    checkpoint_step,
    load_model,
    load_tokenizer,
    model_config_hash,
    read_provenance,
    verify_checkpoint_dir,
)
from grokpath.data import SPLITS, DataError, read_split, split_path
from grokpath.devices import use_threads
from grokpath.io import atomic_path, write_parquet
from grokpath.routing import NORMALIZATIONS, RoutingAccumulator, find_routers, router_weights, routing_weights

log = logging.getLogger(__name__)

__all__ = ["NORMALIZATIONS", "RoutingAccumulator", "routing_weights"]  # re-exported from grokpath.routing


@dataclass
class TraceBatch:
    loss: torch.Tensor  # (B,) float32, mean token NLL over real (or loss_mask) tokens
    routing: torch.Tensor  # (B, L, K) float32, token-mean routing weights over real tokens
    token_expert_ids: torch.Tensor | None = None  # (B, T, L, top_k) int64, the experts each token was dispatched to
    token_weights: torch.Tensor | None = None  # (B, T, L, top_k) float32, their weights
    token_entropy: float | None = None  # mean per-token entropy (nats) of the full routing distribution
    routing_at: torch.Tensor | None = None  # (B, [P,] L, K) float32, the routing distribution at chosen positions per sample


_CHUNK_BYTES = 2**21  # float32 logits per loss chunk on the CPU: about 2 MiB, so each chunk stays in cache
_CHUNK_BYTES_GPU = 2**30  # on a GPU: few kernel launches, while a float32 copy of bf16 logits stays bounded


def _predicted(attention_mask: torch.Tensor, loss_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T-1) float: 1 where the token at position t+1 is real (and marked by ``loss_mask``)."""
    valid = (attention_mask[:, 1:] * attention_mask[:, :-1]).float()
    if loss_mask is not None:
        valid = valid * loss_mask[:, 1:].to(valid)
    return valid


def _chunked_token_nll(
    logits: torch.Tensor, input_ids: torch.Tensor, want_hits: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-position next-token NLL (B, T-1) float32 and argmax hits (B, T-1) bool or None.

    Rows of logits go through ``F.cross_entropy`` a chunk at a time (cache-sized on the
    CPU, 1 GiB on a GPU), upcast to float32 per chunk: the same numbers as one call on the whole (B·(T-1), V) matrix
    (the loss is row-wise), at a fraction of the memory traffic, and half-precision
    logits are never copied to float32 whole.
    """
    batch, length, vocab = logits.shape
    flat = logits.reshape(-1, vocab)  # a view: row (b, t) predicts token t + 1 of sample b
    labels = torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1).reshape(-1)  # last row: unused
    rows = max(1, (_CHUNK_BYTES_GPU if logits.is_cuda else _CHUNK_BYTES) // (4 * vocab))
    nll, hits = [], []
    for start in range(0, flat.shape[0], rows):
        chunk, target = flat[start : start + rows].float(), labels[start : start + rows]
        nll.append(F.cross_entropy(chunk, target, reduction="none"))
        if want_hits:
            hits.append(chunk.argmax(-1) == target)
    nll = torch.cat(nll).view(batch, length)[:, :-1]
    return nll, torch.cat(hits).view(batch, length)[:, :-1] if want_hits else None


def sample_losses(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean next-token NLL per sample (B,), float32: the one per-sample loss of the project.

    Averages over the predicted positions t ≥ 1 whose token is real (``attention_mask``
    1) and, if given, marked by ``loss_mask`` (B, T) (e.g. the answer tokens, see
    :func:`answer_mask`); position 0 is never predicted. Padding never enters the mean.
    A sample with no such position gets NaN. Differentiable (usable for training).
    """
    valid = _predicted(attention_mask, loss_mask)
    nll, _ = _chunked_token_nll(logits, input_ids, want_hits=False)
    return (nll * valid).sum(1) / valid.sum(1)


def sample_exact_match(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per sample (B,) bool: the argmax prediction is right at every position :func:`sample_losses` averages
    (teacher-forced exact match; equals greedy decoding while the prefix stays right)."""
    valid = _predicted(attention_mask, loss_mask)
    _, hits = _chunked_token_nll(logits, input_ids, want_hits=True)
    return (hits | (valid == 0)).all(1)


@torch.inference_mode()
def trace_pass(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    normalization: str = "softmax",
    router: str | None = None,
    per_token: bool = False,
    loss_mask: torch.Tensor | None = None,
    entropy: bool = False,
    positions: torch.Tensor | None = None,
) -> TraceBatch:
    """One forward pass: per-sample loss, token-mean routing and (optionally) per-token top-k.

    The loss is over ``loss_mask`` tokens when given; routing is always over all real
    tokens. Both are reduced on the model's device and copied to the CPU once. With
    ``positions`` (B,) or (B, P), ``routing_at`` (B, [P,] L, K) is each sample's routing
    distribution at those positions.
    """
    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    keep = positions is not None  # the per-token distributions, to read one position of each sample
    with RoutingAccumulator(model, attention_mask, normalization, router, per_token, entropy, keep=keep) as routing:
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    loss = sample_losses(out.logits, input_ids, attention_mask, None if loss_mask is None else loss_mask.to(device))
    result = TraceBatch(loss=loss.cpu(), routing=routing.means().cpu(), token_entropy=routing.mean_entropy() if entropy else None)
    if keep:
        at = torch.as_tensor(positions, device=device)
        rows = torch.arange(input_ids.shape[0], device=device).reshape(-1, *[1] * (at.dim() - 1))
        result.routing_at = torch.stack([dist[rows, at] for dist, _ in routing.kept], dim=-2).float().cpu()
    if per_token:
        result.token_expert_ids = torch.stack(routing.token_ids, dim=2).cpu()  # (B, T, L, k)
        result.token_weights = torch.stack(routing.token_weights, dim=2).cpu()
    return result


def trace_batch(model, input_ids, attention_mask, normalization="softmax", loss_mask=None, router=None):
    """(loss (B,), routing (B, L, K)): mean token NLL and token-mean routing weights over
    real tokens (attention_mask 1), from ONE forward pass; float32 CPU tensors.
    With ``loss_mask`` (B, T), the NLL is over the marked tokens only (routing is not)."""
    result = trace_pass(model, input_ids, attention_mask, normalization, router, loss_mask=loss_mask)
    return result.loss, result.routing


# ---------------------------------------------------------------- one checkpoint, all files
def set_experts_implementation(model, implementation: str) -> str | None:
    """Use transformers' ``implementation`` for the MoE experts; returns what the model runs
    (None for a model without the switch, e.g. remote code)."""
    if not hasattr(model, "set_experts_implementation"):
        return None
    try:
        model.set_experts_implementation(implementation)
    except ValueError as error:  # models without an experts kernel switch
        log.info("experts implementation not set (%s)", error)
        return None
    return implementation


def _dictionary(values: list[str]) -> pa.DictionaryArray:
    return pa.array(values, pa.string()).dictionary_encode()


def position_type(position: str, n_routing: int) -> pa.DataType:
    """The column type of ``routing_<position>``: one distribution per sample, or a list of them (``steps``)."""
    one = pa.list_(pa.float32(), n_routing)
    return pa.list_(one) if position == "steps" else one


def trace_schema(n_routing: int, extra_positions: tuple[str, ...] = ()) -> pa.Schema:
    """The trace file's schema; each of ``extra_positions`` adds a column ``routing_<position>``."""
    return pa.schema(
        [
            ("sample_id", pa.dictionary(pa.int32(), pa.string())),
            ("domain", pa.dictionary(pa.int32(), pa.string())),
            ("split", pa.dictionary(pa.int32(), pa.string())),
            ("ckpt", pa.string()),
            ("step", pa.int64()),
            ("revision_sha", pa.string()),
            ("n_tokens", pa.int32()),
            ("loss", pa.float32()),
            ("routing", pa.list_(pa.float32(), n_routing)),
            *[(f"routing_{position}", position_type(position, n_routing)) for position in extra_positions],
        ]
    )


def tokenize_split(tokenizer, records: list[dict], max_length: int, where: str) -> tuple[list[list[int]], int]:
    """Token ids per record, truncated to ``max_length``; also the number truncated."""
    encoded = tokenizer([r["text"] for r in records], add_special_tokens=True)["input_ids"]
    n_truncated = sum(len(ids) > max_length for ids in encoded)
    encoded = [list(ids[:max_length]) for ids in encoded]
    for record, ids in zip(records, encoded):
        if len(ids) < 2:
            raise DataError(f"{where}: sample '{record['sample_id']}' has {len(ids)} token(s); a loss needs at least 2")
    return encoded, n_truncated


def answer_starts(tokenizer, texts: list[str], prompts: list[str]) -> list[int]:
    """Per text, the position of its first answer token: the one place that splits prompt from answer.

    Positions count the tokenizer's special tokens (``add_special_tokens=True``). A token
    belongs to the answer when its characters end beyond ``len(prompt)`` (tokenizer
    offsets), so the target and a closing newline count, the prompt and BOS do not, and a
    token straddling the boundary counts as answer. A text whose tokens all lie in the
    prompt gets ``len(tokens)``. Slow tokenizers (no offsets) count the prompt's own tokens.
    At least 1: position 0 is never predicted.
    """
    if tokenizer.is_fast:
        offsets = tokenizer(list(texts), add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
        starts = [next((t for t, (_, end) in enumerate(spans) if end > len(p)), len(spans)) for p, spans in zip(prompts, offsets)]
    else:
        starts = [len(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    return [max(1, s) for s in starts]


def answer_mask(attention_mask: torch.Tensor, starts: list[int] | torch.Tensor) -> torch.Tensor:
    """(B, T) loss mask for :func:`sample_losses`: 1 at real tokens (``attention_mask``) from ``starts[b]`` on."""
    starts = torch.as_tensor(starts, device=attention_mask.device)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return attention_mask * (positions[None, :] >= starts[:, None]).to(attention_mask.dtype)


def target_starts(tokenizer, records: list[dict], token_ids: list[list[int]], where: str) -> list[int]:
    """Per record, the first loss position of ``traces.loss_on: target`` (:func:`answer_starts`),
    checked: ``text`` must start with ``prompt`` and a target token must survive truncation."""
    for record in records:
        if not record["text"].startswith(record["prompt"]):
            raise DataError(f"{where}: sample '{record['sample_id']}': field 'text' does not start with field 'prompt'")
    starts = answer_starts(tokenizer, [r["text"] for r in records], [r["prompt"] for r in records])
    for record, start, ids in zip(records, starts, token_ids):
        if start >= len(ids):
            raise DataError(
                f"{where}: sample '{record['sample_id']}' has no target token within traces.max_length={len(ids)} "
                f"(prompt takes {start} tokens); traces.loss_on=target needs one"
            )
    return starts


def answer_positions(tokenizer, records: list[dict], token_ids: list[list[int]]) -> list[int]:
    """Per record, the position of its last prompt token (the first answer token's position minus one,
    :func:`answer_starts`), within the truncated ``token_ids``."""
    starts = answer_starts(tokenizer, [r["text"] for r in records], [r["prompt"] for r in records])
    return [min(start - 1, len(ids) - 1) for start, ids in zip(starts, token_ids)]


def step_positions(tokenizer, records: list[dict], token_ids: list[list[int]], where: str) -> list[list[int]]:
    """Per record, for each entry of its ``step_offsets`` (character offsets in ``text`` where a step's
    output begins), the position of the token before the token holding that character: the position
    whose output predicts the step's first token. Needs a fast tokenizer (offsets). A split in which
    no record carries ``step_offsets`` (a domain without steps, such as ``control``) gets no
    positions; within a split that has them, every record must."""
    if not any("step_offsets" in r for r in records):
        return [[] for _ in records]
    if not tokenizer.is_fast:
        raise DataError(f"{where}: traces.positions 'steps' needs a fast tokenizer (character offsets)")
    spans_of = tokenizer([r["text"] for r in records], add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
    out = []
    for record, spans, ids in zip(records, spans_of, token_ids):
        offsets = record.get("step_offsets")
        if not isinstance(offsets, list) or not offsets or not all(isinstance(o, int) for o in offsets):
            raise DataError(f"{where}: sample '{record['sample_id']}': field 'step_offsets' missing or not a list of integers")
        found = []
        for offset in offsets:
            token = next((t for t, (start, end) in enumerate(spans) if start <= offset < end), None)
            if token is None or token < 1 or token >= len(ids):
                raise DataError(
                    f"{where}: sample '{record['sample_id']}': field 'step_offsets' entry {offset} is not at a token "
                    f"after the first within traces.max_length={len(ids)}"
                )
            found.append(token - 1)
        out.append(found)
    return out


def trace_split(
    model,
    token_ids: list[list[int]],
    pad_id: int,
    traces: dict,
    desc: str,
    loss_starts: list[int] | None = None,
    positions: list[list[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[TraceBatch], list[int], list[np.ndarray] | None]:
    """Loss (N,) and token-mean routing (N, L, K) in input order, streaming length-sorted batches.

    ``loss_starts[i]``, if given, is sample i's first loss position (the loss is over
    tokens from there on). Also returns the batches and their sample order (for per-token output),
    and, with ``positions`` (a list per sample), the routing (P_i, L, K) at sample i's positions
    (else None), from the same forward passes.
    """
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))  # less padding per batch
    batch_size = int(traces["batch_size"])
    losses, routings, at, batches = {}, {}, {}, []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        index = order[start : start + batch_size]
        width = max(len(token_ids[i]) for i in index)
        input_ids = torch.full((len(index), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):  # right padding
            input_ids[row, : len(token_ids[i])] = torch.tensor(token_ids[i])
            attention_mask[row, : len(token_ids[i])] = 1
        loss_mask = None if loss_starts is None else answer_mask(attention_mask, [loss_starts[i] for i in index])
        at_batch = None
        width_at = 0 if positions is None else max(len(positions[i]) for i in index)
        if width_at:  # padded with position 0, cut off again below
            at_batch = torch.tensor([positions[i] + [0] * (width_at - len(positions[i])) for i in index])
        result = trace_pass(
            model,
            input_ids,
            attention_mask,
            traces["routing_normalization"],
            traces["router"],
            traces["per_token"],
            loss_mask=loss_mask,
            positions=at_batch,
        )
        for row, i in enumerate(index):
            losses[i], routings[i] = result.loss[row].item(), result.routing[row].numpy()
            if positions is not None:
                at[i] = (
                    np.zeros((0, *result.routing.shape[1:]), np.float32)
                    if not width_at
                    else result.routing_at[row, : len(positions[i])].numpy().astype(np.float32)
                )
        if traces["per_token"]:
            batches.append(result)
    n = len(token_ids)
    return (
        np.array([losses[i] for i in range(n)], dtype=np.float32),
        np.stack([routings[i] for i in range(n)]).astype(np.float32),
        batches,
        order,
        None if positions is None else [at[i] for i in range(n)],
    )


def per_token_table(
    sample_ids: list[str],
    token_ids: list[list[int]],
    batches: list[TraceBatch],
    order: list[int],
    batch_size: int,
    layer_index: list[int] | None = None,
) -> pa.Table:
    """One row per (sample, position, layer): expert_ids uint8[k], weights float16[k]; sorted by sample_id.

    ``layer`` is the real decoder-layer index (``layer_index``, the routers' layers; default 0..L-1)."""
    rows_of = {}
    for b, result in enumerate(batches):
        for row, i in enumerate(order[b * batch_size : (b + 1) * batch_size]):
            n = len(token_ids[i])
            rows_of[i] = (result.token_expert_ids[row, :n].numpy(), result.token_weights[row, :n].numpy())
    ids, positions, layers, experts, weights = [], [], [], [], []
    for i in sorted(range(len(sample_ids)), key=lambda i: sample_ids[i]):
        expert_ids, expert_weights = rows_of[i]  # (T, L, k)
        n_tok, n_layers, k = expert_ids.shape
        ids += [sample_ids[i]] * (n_tok * n_layers)
        positions.append(np.repeat(np.arange(n_tok, dtype=np.int32), n_layers))
        index = np.arange(n_layers) if layer_index is None else np.asarray(layer_index)
        layers.append(np.tile(index.astype(np.int16), n_tok))
        experts.append(expert_ids.reshape(-1, k))
        weights.append(expert_weights.reshape(-1, k))
    experts_flat, weights_flat = np.concatenate(experts), np.concatenate(weights)
    if experts_flat.max() > np.iinfo(np.uint8).max:
        raise ValueError("per-token expert ids exceed uint8: more than 256 experts")
    k = experts_flat.shape[1]
    return pa.table(
        {
            "sample_id": _dictionary(ids),
            "position": pa.array(np.concatenate(positions)),
            "layer": pa.array(np.concatenate(layers)),
            "expert_ids": pa.FixedSizeListArray.from_arrays(pa.array(experts_flat.astype(np.uint8).ravel()), k),
            "weights": pa.FixedSizeListArray.from_arrays(pa.array(weights_flat.astype(np.float16).ravel()), k),
        }
    )


def position_column(position: str, values: list[np.ndarray], n_routing: int) -> pa.Array:
    """``routing_<position>`` from per-sample (P_i, L, K) arrays: P_i = 1 each, or a list per sample (``steps``)."""
    flat = pa.FixedSizeListArray.from_arrays(
        pa.array(np.concatenate([v.reshape(-1) for v in values]).astype(np.float32)), n_routing
    )
    if position != "steps":
        return flat
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat)


def run_traces_checkpoints(
    cfg: dict, checkpoint_dirs: list[Path], ckpts: list[str], out_dirs: list[Path], threads: int | None = None
) -> None:
    """:func:`run_traces` for each checkpoint in turn, in one process.

    For the mini study, whose checkpoints all come from one pretraining job at once: a job per
    tiny checkpoint would spend most of its time importing torch and transformers.
    """
    for checkpoint_dir, ckpt, out_dir in zip(checkpoint_dirs, ckpts, out_dirs, strict=True):
        run_traces(cfg, checkpoint_dir, ckpt, out_dir, threads)


def run_traces(cfg: dict, checkpoint_dir: Path | str, ckpt: str, out_dir: Path | str, threads: int | None = None) -> list[Path]:
    """Trace every (domain, split) of ``cfg['domains']`` through checkpoint ``ckpt``, loading it once.

    ``cfg`` holds the validated ``checkpoints``, ``domains`` and ``traces`` sections; ``threads``
    sets torch's CPU threads. Data and tokenization are checked before the (possibly 14 GB) model load.
    """
    use_threads(threads)
    checkpoints, domains, traces = cfg["checkpoints"], cfg["domains"], cfg["traces"]
    loss_on = traces["loss_on"]  # enums are the schema's to check
    extra_positions = tuple(p for p in traces.get("positions", ["mean"]) if p != "mean")
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    trust = bool(checkpoints["trust_remote_code"])
    step = checkpoint_step(checkpoints, ckpt)
    revision_sha = read_provenance(checkpoint_dir).get("revision_sha")
    if not domains:
        raise DataError("domains is empty: configure at least one domain to trace")
    paths = {(d, s): split_path(domains, d, s) for d in domains for s in SPLITS}
    require = ("sample_id", "text") + (("prompt", "target") if loss_on == "target" else ())
    require += ("prompt",) if "answer" in extra_positions and "prompt" not in require else ()
    records_of = {key: read_split(path, require) for key, path in paths.items()}  # all data checked first
    verify_checkpoint_dir(checkpoint_dir)

    tokenizer = load_tokenizer(checkpoints.get("tokenizer") or checkpoint_dir, trust_remote_code=trust)
    pad_id = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)
    max_length = int(traces["max_length"])
    inputs = {}
    for (domain, split), records in records_of.items():
        path = paths[domain, split]
        token_ids, n_truncated = tokenize_split(tokenizer, records, max_length, path)
        starts = target_starts(tokenizer, records, token_ids, path) if loss_on == "target" else None
        if "answer" in extra_positions:
            for record in records:
                if not record["text"].startswith(record["prompt"]):
                    raise DataError(f"{path}: sample '{record['sample_id']}': field 'text' does not start with field 'prompt'")
        at = {}  # each extra position's token positions per record, checked before the model load
        for position in extra_positions:
            if position == "answer":
                at[position] = [[p] for p in answer_positions(tokenizer, records, token_ids)]
            else:
                at[position] = step_positions(tokenizer, records, token_ids, path)
        inputs[domain, split] = (records, token_ids, n_truncated, starts, at)
        if n_truncated:
            log.info("%s: %d of %d samples truncated to %d tokens", path, n_truncated, len(records), max_length)

    log.info("loading %s (%s, %s on %s)", ckpt, checkpoint_dir, traces["dtype"], traces["device"])
    model = load_model(checkpoint_dir, traces["dtype"], traces["device"], trust_remote_code=trust, device_key="traces.device")
    experts = set_experts_implementation(model, traces["experts_implementation"])
    routers = find_routers(model, traces["router"])
    n_layers, n_experts, top_k = len(routers.layers), routers.num_experts, routers.top_k
    base_metadata = {
        "L": n_layers,
        "K": n_experts,
        "top_k": top_k,
        "routing_normalization": traces["routing_normalization"],
        "model_config_hash": model_config_hash(checkpoint_dir),
        "grokpath_version": __version__,
        "ckpt": ckpt,
        "step": step,
        "max_length": max_length,
        "loss_on": loss_on,
        "dtype": traces["dtype"],
        **routers.metadata(),  # model_type, router path, real layer indices, dense layers
        "experts_implementation": experts,
    }
    if extra_positions:
        base_metadata["positions"] = ["mean", *extra_positions]

    written = []
    for (domain, split), (records, token_ids, n_truncated, starts, at) in inputs.items():
        # every extra position of a sample is read in the same forward pass: one list per sample, cut apart after
        positions = [sum((at[p][i] for p in extra_positions), []) for i in range(len(records))] if extra_positions else None
        loss, routing, batches, order, routing_at = trace_split(
            model, token_ids, pad_id, traces, f"{ckpt} {domain}/{split}", starts, positions
        )
        at_position, begin = {}, [0] * len(records)
        for position in extra_positions:
            at_position[position] = [routing_at[i][b : b + len(at[position][i])] for i, b in enumerate(begin)]
            begin = [b + len(at[position][i]) for i, b in enumerate(begin)]
        sample_ids = [r["sample_id"] for r in records]
        rows = sorted(range(len(records)), key=lambda i: sample_ids[i])
        n = len(rows)
        table = pa.Table.from_arrays(
            [
                _dictionary([sample_ids[i] for i in rows]),
                _dictionary([domain] * n),
                _dictionary([split] * n),
                pa.array([ckpt] * n, pa.string()),
                pa.array(np.full(n, step, dtype=np.int64)),
                pa.array([revision_sha] * n, pa.string()),
                pa.array(np.array([len(token_ids[i]) for i in rows], dtype=np.int32)),
                pa.array(loss[rows]),
                pa.FixedSizeListArray.from_arrays(pa.array(routing[rows].reshape(-1)), n_layers * n_experts),
                *[
                    position_column(position, [values[i] for i in rows], n_layers * n_experts)
                    for position, values in at_position.items()
                ],
            ],
            schema=trace_schema(n_layers * n_experts, tuple(at_position)),
        )
        path = out_dir / f"{domain}_{split}.parquet"
        write_parquet(table, path, {**base_metadata, "domain": domain, "split": split, "n_truncated": n_truncated})
        written.append(path)
        if traces["per_token"]:
            tokens_path = out_dir / f"{domain}_{split}.tokens.parquet"
            tokens = per_token_table(sample_ids, token_ids, batches, order, int(traces["batch_size"]), routers.layers)
            write_parquet(tokens, tokens_path, {**base_metadata, "domain": domain, "split": split})
            written.append(tokens_path)
        log.info("%s %s/%s: %d samples, mean loss %.4f -> %s", ckpt, domain, split, n, float(loss.mean()), path)

    weights_path = out_dir / "router_weights.npy"
    with atomic_path(weights_path, ".npy") as tmp:
        np.save(tmp, router_weights(model, traces["router"]))
    written.append(weights_path)
    return written
