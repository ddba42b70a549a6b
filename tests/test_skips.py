"""Nothing lost on bad input: every row the data stage reads is kept or skipped under a named, counted
reason; the routers record what the model ran; the monitor refuses a model or probes it cannot measure.

Data cases run `grokpath.selection.select_source` (the select_data rule's own code, `data.source: local`)
on hand-built JSON-lines files and check the kept rows and each reason's count.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from grokpath.config import validate
from grokpath.data import BAD_INPUT_REASONS, SKIP_REASONS, DataError
from grokpath.io import read_metadata
from grokpath.selection import gather_manifest, select_domain, select_source, token_lengths

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa"  # 10 whitespace tokens


def whitespace_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """Token count = len(text.split()), no special tokens: lengths are hand-checkable."""
    tk = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(directory)
    return PreTrainedTokenizerFast.from_pretrained(directory)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return whitespace_tokenizer(tmp_path_factory.mktemp("tok"))


def data_cfg(local: Path, **data) -> dict:
    return validate({"data": {"source": "local", "local_dir": str(local), "min_tokens": 3, "max_tokens": 50, **data}})["data"]


def write_lines(path: Path, lines: list) -> Path:
    """One line per item: a dict as JSON, bytes as they are (bad bytes included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines))
    return path


def run(tmp_path, tokenizer, lines, *, fmt="text", split="train", n=None, window=True, data=None, **spec):
    """select_source on one local file; (records, counts)."""
    write_lines(tmp_path / "local" / "src" / "rows.jsonl", lines)
    cfg = data_cfg(tmp_path / "local", **(data or {}))
    spec = {"path": "json", "format": fmt, "local": "src/rows", "text_fields": ["text"], **spec}
    records, _, counts = select_source(
        cfg, spec, domain="math", split=split, n=n, tokenizer=tokenizer, local_stem="src/rows", label="src",
        sample_prefix=f"math-{split}", window=window, shuffle=False,
    )  # fmt: skip
    return records, counts


def assert_accounted(counts: dict) -> None:
    """Every row read is filtered, skipped under one reason, kept, or beyond n."""
    skipped = sum(counts[r] for r in SKIP_REASONS)
    assert counts["read"] == counts["filtered"] + skipped + counts["kept"] + counts["beyond_n"], counts


def nonzero(counts: dict) -> dict:
    return {r: counts[r] for r in SKIP_REASONS if counts[r]}


# ---- 1. windows the stage makes are within data.max_tokens, measured as the traces measure ----


def test_windows_fit_max_tokens_when_re_tokenized(real_rows, tmp_path):
    """Real OLMo tokenizer (byte-level BPE): a window cut at a token's own characters loses the space before its
    first word; alone, ` word` → `word` may split into more tokens. Every window the stage makes is kept."""
    from datasets import load_from_disk

    from grokpath.standin.hub import olmo_tokenizer
    from grokpath.standin.real_rows import CSQA_DIR

    tok = olmo_tokenizer(real_rows / "olmo_tokenizer.json")
    questions = [row["question"] for row in load_from_disk(str(real_rows / CSQA_DIR))]
    docs = [{"id": f"doc-{d}", "text": " ".join(questions[d * 120 : (d + 1) * 120])} for d in range(3)]
    max_tokens = 64
    # the input exercises the case: some naive cuts (max_tokens document tokens) re-tokenize longer
    naive_over = 0
    for doc in docs:
        spans = tok(doc["text"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        cuts = [
            doc["text"][spans[a][0] : spans[a + max_tokens - 1][1]] for a in range(0, len(spans) - max_tokens + 1, max_tokens)
        ]
        naive_over += sum(n > max_tokens for n in token_lengths(tok, cuts))
    assert naive_over >= 2
    records, counts = run(
        tmp_path, tok, docs, id_field="id", windows={"max_per_document": 10_000},
        data={"max_tokens": max_tokens, "min_tokens": 8},
    )  # fmt: skip
    assert counts["too_long"] == 0 and counts["too_short"] == 0
    assert counts["read"] == counts["documents"] == 3
    assert counts["kept"] == counts["windows"] == len(records) >= 60
    for record in records:
        doc_id, offset = record["sample_id"].removeprefix("math-train-").split("@")
        text = docs[int(doc_id.removeprefix("doc-"))]["text"]
        assert int(offset) % max_tokens == 0 and record["text"] in text
        assert len(tok(record["text"], add_special_tokens=True)["input_ids"]) <= max_tokens
    assert nonzero(counts) == {}


def test_windows_leave_room_for_special_tokens(tmp_path):
    """A tokenizer that adds BOS: a window is max_tokens − 1 document tokens, so the traces never truncate it."""
    from tokenizers import processors

    tk = Tokenizer(
        models.WordLevel({"[UNK]": 0, "[PAD]": 1, "<s>": 2, **{w: i + 3 for i, w in enumerate(WORDS.split())}}, "[UNK]")
    )
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>")
    doc = {"id": "d", "text": " ".join([WORDS] * 3)}  # 30 words
    records, counts = run(tmp_path, tok, [doc], id_field="id", windows={"max_per_document": 9}, data={"max_tokens": 10})
    # 30 // 9 = 3 windows of 9 words (+ BOS = 10 tokens each), at offsets 0, 9, 18
    assert [r["sample_id"] for r in records] == ["math-train-d@0", "math-train-d@9", "math-train-d@18"]
    assert all(len(r["text"].split()) == 9 for r in records) and counts["too_long"] == 0


# ---- 2. whitespace-only documents ----


def test_empty_and_whitespace_documents_are_skipped(tmp_path, tokenizer):
    lines = [
        {"url": "u1", "text": WORDS},
        {"url": "u2", "text": "   \n\t  "},
        {"url": "u3", "text": ""},
        {"url": "u4", "text": WORDS + " x"},
    ]
    records, counts = run(tmp_path, tokenizer, lines, id_field="url", data={"max_skipped_fraction": 0.5})
    assert [r["sample_id"] for r in records] == ["math-train-u1", "math-train-u4"]
    assert nonzero(counts) == {"empty_text": 2}
    assert_accounted(counts)


# ---- 3. blank test rows are refused ----


def test_blank_prompt_or_target_test_rows_are_refused(tmp_path, tokenizer):
    good = {"problem": "What is 1+1?", "solution": "It is $2$.", "level": "Level 1", "type": "Algebra"}
    lines = [
        good,
        {**good, "problem": ""},  # blank prompt
        {**good, "solution": "  \n"},  # blank target
        {"problem": None, "solution": None, "level": None, "type": None},  # an empty row
        {**good, "problem": "What is 2+2?", "solution": "$4$"},
    ]
    records, counts = run(
        tmp_path, tokenizer, lines, fmt="math", split="test_unfiltered", window=False, data={"max_skipped_fraction": 0.6}
    )
    assert [r["sample_id"] for r in records] == ["math-test_unfiltered-0", "math-test_unfiltered-4"]
    assert [r["problem"] for r in records] == ["What is 1+1?", "What is 2+2?"]
    assert nonzero(counts) == {"blank_field": 2, "missing_text": 1}
    assert_accounted(counts)


def test_blank_choice_and_bad_answer_rows_are_refused(tmp_path, tokenizer):
    row = {
        "question": "Which is an alkane?",
        "subject": "college_chemistry",
        "choices": ["ethane", "ethene", "ethyne", "benzene"],
    }
    lines = [
        {**row, "answer": 0},
        {**row, "question": " ", "answer": 0},
        {**row, "answer": 7},
        {**row, "choices": ["", "b", "c", "d"], "answer": 0},
    ]
    records, counts = run(
        tmp_path, tokenizer, lines, fmt="mmlu", split="test_unfiltered", window=False, data={"max_skipped_fraction": 0.8}
    )
    assert [r["sample_id"] for r in records] == ["math-test_unfiltered-0"]
    assert nonzero(counts) == {"blank_field": 2, "bad_answer": 1}


# ---- 4. undecodable bytes ----


def test_undecodable_and_broken_lines_are_skipped_and_counted(tmp_path, tokenizer):
    lines = [
        {"url": "u1", "text": WORDS},
        b'{"url": "u2", "text": "caf\xe9 ' + WORDS.encode() + b'"}',  # latin-1 byte: not UTF-8
        b'{"url": "u3", "text": "cut off',  # not JSON
        {"url": "u4", "text": WORDS + " more"},
        b"[1, 2, 3]",  # JSON, not an object
        {"url": "u5", "text": "caf\u00e9 " + WORDS},  # the same text, valid UTF-8
    ]
    records, counts = run(tmp_path, tokenizer, lines, id_field="url", data={"max_skipped_fraction": 0.6})
    assert [r["sample_id"] for r in records] == ["math-train-u1", "math-train-u4", "math-train-u5"]
    assert records[2]["text"] == "café " + WORDS
    assert nonzero(counts) == {"undecodable": 3}
    assert_accounted(counts)


def test_undecodable_line_in_a_gzipped_json_file_and_a_json_array(tmp_path, tokenizer):
    """dolma's files are JSON lines named .json.gz; a .json file may also be one JSON array (read whole)."""
    import gzip

    local = tmp_path / "local" / "src"
    local.mkdir(parents=True)
    lines = [json.dumps({"id": "a", "text": WORDS}).encode(), b'{"id": "b", "text": "\xff ' + WORDS.encode() + b'"}']
    lines.append(json.dumps({"id": "c", "text": WORDS + " c"}).encode())
    (local / "books.json.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    (local / "array.json").write_text(json.dumps([{"id": "x", "text": WORDS}, {"id": "y", "text": WORDS + " y"}]))
    cfg = data_cfg(tmp_path / "local", max_skipped_fraction=0.5)
    for stem, want, undecodable in (("src/books.json.gz", ["a", "c"], 1), ("src/array.json", ["x", "y"], 0)):
        spec = {"path": "json", "format": "text", "local": stem, "text_fields": ["text"], "id_field": "id"}
        records, _, counts = select_source(
            cfg, spec, domain="commonsense", split="train", n=None, tokenizer=tokenizer, local_stem=stem, label=stem,
            sample_prefix="c", window=True, shuffle=False,
        )  # fmt: skip
        assert [r["sample_id"] for r in records] == [f"c-{i}" for i in want]
        assert counts["undecodable"] == undecodable and counts["read"] == 3 - (stem == "src/array.json")


# ---- 5. a row without the text column, where other rows have it ----


def test_row_without_the_text_column_is_missing_text(tmp_path, tokenizer):
    lines = [
        {"url": "u1", "text": WORDS},
        {"url": "u2", "body": WORDS + " b"},
        {"url": "u3", "text": None},
        {"url": "u4", "text": WORDS + " d"},
    ]
    records, counts = run(tmp_path, tokenizer, lines, id_field="url", data={"max_skipped_fraction": 0.5})
    assert [r["sample_id"] for r in records] == ["math-train-u1", "math-train-u4"]
    assert nonzero(counts) == {"missing_text": 2}  # not too_short: no text is not an empty text


def test_one_of_several_text_fields_missing_joins_empty(tmp_path, tokenizer):
    lines = [{"title": "T", "text": WORDS}, {"text": WORDS + " b"}, {"other": 1}]
    records, counts = run(tmp_path, tokenizer, lines, text_fields=["title", "text"], data={"max_skipped_fraction": 0.5})
    assert [r["text"] for r in records] == ["T\n" + WORDS, "\n" + WORDS + " b"]
    assert nonzero(counts) == {"missing_text": 1}


# ---- 6. rows without the id column ----


def test_rows_without_an_id_are_missing_id_not_duplicates(tmp_path, tokenizer):
    lines = [
        {"url": "u1", "text": WORDS},
        {"text": WORDS + " b"},
        {"url": None, "text": WORDS + " c"},
        {"url": "u4", "text": WORDS + " d"},
    ]
    lines += [{"url": "u1", "text": WORDS + " e"}]  # a repeated id: still a duplicate
    records, counts = run(tmp_path, tokenizer, lines, id_field="url", data={"max_skipped_fraction": 0.5})
    assert [r["sample_id"] for r in records] == ["math-train-u1", "math-train-u4"]
    assert nonzero(counts) == {"missing_id": 2, "duplicate_id": 1}
    assert_accounted(counts)


# ---- max_skipped_fraction, logging, manifests ----


def test_too_many_bad_rows_stop_with_one_line_naming_file_and_reason(tmp_path, tokenizer):
    lines = [
        {"url": "u1", "text": WORDS},
        {"text": WORDS + " b"},
        {"text": WORDS + " c"},
        b"\xff\xfe",
        {"url": "u5", "text": WORDS + " e"},
    ]
    with pytest.raises(DataError) as err:
        run(tmp_path, tokenizer, lines, id_field="url", data={"max_skipped_fraction": 0.5})
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "local" / "src" / "rows.jsonl") in message
    assert "3 of 5 rows read skipped" in message and "commonest: missing_id (2)" in message and "row #1" in message
    records, counts = run(tmp_path, tokenizer, lines, id_field="url", data={"max_skipped_fraction": 0.6})
    assert len(records) == 2 and nonzero(counts) == {"missing_id": 2, "undecodable": 1}


def test_a_column_no_row_has_stops_before_the_stream_is_read_through(tmp_path, tokenizer):
    lines = [{"url": f"u{i}", "body": WORDS} for i in range(1500)]
    with pytest.raises(DataError, match=r"1000 of 1000 rows read .* missing_text \(1000\), e\.g\. row u0 has no column 'text'"):
        run(tmp_path, tokenizer, lines, id_field="url")


def test_each_reason_is_logged_once_with_an_example(tmp_path, tokenizer, caplog):
    lines = [{"url": "u1", "text": WORDS}, {"url": "u2", "text": " "}, {"url": "u3", "text": "  "}, {"url": "u4", "text": "a b"}]
    with caplog.at_level(logging.INFO, logger="grokpath.selection"):
        run(tmp_path, tokenizer, lines, id_field="url", data={"max_skipped_fraction": 0.6})
    lines_logged = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert lines_logged == [
        "src: skipped 2 as empty_text (text empty or whitespace only), e.g. row u2 text is empty or whitespace",
        f"src: skipped 1 as too_short (fewer than data.min_tokens tokens), e.g. row math-train-u4 has 2 tokens (data.min_tokens 3) "
        f"({tmp_path / 'local' / 'src' / 'rows.jsonl'})",
    ]


def test_beyond_n_rows_are_counted(tmp_path, tokenizer):
    lines = [{"url": f"u{i}", "text": f"{WORDS} {i}"} for i in range(10)]
    records, counts = run(tmp_path, tokenizer, lines, id_field="url", n=4)
    assert len(records) == 4 and counts["read"] == 10 and counts["beyond_n"] == 6
    assert_accounted(counts)


def test_manifest_metadata_lists_every_reason(tmp_path, tokenizer):
    local = tmp_path / "local"
    write_lines(local / "math" / "train.jsonl", [{"url": "a", "text": WORDS}, {"url": "b", "text": " "}])
    write_lines(local / "math" / "validation.jsonl", [{"query": "q one two", "resp": "r"}])
    write_lines(local / "math" / "test.jsonl", [{"problem": "p", "solution": "s", "level": "1", "type": "A"}])
    cfg = {"data": data_cfg(local, max_skipped_fraction=0.5)}
    cfg["data"]["domains"]["math"]["test"]["name"] = None
    select_domain(cfg, "math", tmp_path / "out", tmp_path / "out" / "m.parquet", tokenizer=tokenizer)
    gather_manifest([tmp_path / "out" / "m.parquet"], tmp_path / "manifest.parquet")
    skipped = read_metadata(tmp_path / "manifest.parquet")["skipped"]
    assert skipped["math"]["train"] == {**dict.fromkeys(SKIP_REASONS, 0), "empty_text": 1}
    assert skipped["math"]["validation"] == skipped["math"]["test"] == dict.fromkeys(SKIP_REASONS, 0)
    assert pq.read_table(tmp_path / "manifest.parquet").num_rows == 3
    assert set(BAD_INPUT_REASONS) < set(SKIP_REASONS)


def test_mini_world_manifest_lists_every_reason_at_zero(tmp_path):
    from grokpath.world import build_world

    cfg = validate({"world": {"modulus": 7, "n_relations": 3, "max_test": 30, "max_validation": 10}})
    cfg["domains"] = {d: {} for d in ("math", "code", "commonsense", "domain")}
    manifest = build_world(cfg, tmp_path / "world", tmp_path / "tok")
    written = json.loads((tmp_path / "world" / "manifest.json").read_text())
    assert written["skipped"] == manifest["skipped"]
    assert set(written["skipped"]) == set(cfg["domains"])
    for domain, splits in written["skipped"].items():
        assert set(splits) == {"train", "validation", "test"}
        assert all(counts == dict.fromkeys(SKIP_REASONS, 0) for counts in splits.values()), domain


# ---- 7, 8. per-token records hold the experts the model dispatched ----


def dispatched_experts(model, routers, input_ids, attention_mask):
    """Per routed layer, the (N, k) experts and the router logits the model ran: captured where the MoE block hands
    its picks to the experts (``self.experts(hidden_states, indices, weights)`` in PhiMoE and DeepSeek-V3)."""
    import torch

    picks, logits = {}, {}
    handles = []
    for layer, router in zip(routers.layers, routers.modules):
        experts = model.model.layers[layer].mlp.experts
        handles.append(
            experts.register_forward_pre_hook(lambda _m, args, layer=layer: picks.__setitem__(layer, args[1].detach()))
        )
        handles.append(router.register_forward_hook(lambda _m, _a, out, layer=layer: logits.__setitem__(layer, out[0].detach())))
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    for handle in handles:
        handle.remove()
    return picks, logits


def per_token_records(model, input_ids, attention_mask, normalization):
    from grokpath.traces import trace_pass

    result = trace_pass(model, input_ids, attention_mask, normalization, per_token=True)
    return result.token_expert_ids, result.token_weights  # (B, T, L, k)


@pytest.mark.parametrize("normalization", ["softmax", "topk"])
@pytest.mark.parametrize("model_type,overrides", [("phimoe", {"num_experts_per_tok": 3}), ("phimoe", {"num_experts_per_tok": 1})])
def test_phimoe_records_the_two_experts_sparsemixer_dispatches(model_type, overrides, normalization):
    import torch
    from moe_zoo import VOCAB, tiny_moe

    from grokpath.routing import find_routers

    model = tiny_moe(model_type, **overrides)
    routers = find_routers(model)
    assert routers.top_k == 2  # not num_experts_per_tok
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    picks, logits = dispatched_experts(model, routers, ids, mask)
    token_ids, token_weights = per_token_records(model, ids, mask, normalization)
    assert token_ids.shape == (2, 7, len(routers.layers), 2)
    for j, layer in enumerate(routers.layers):
        ran = picks[layer].view(2, 7, -1)
        assert ran.shape[-1] == 2
        assert torch.equal(token_ids[:, :, j].sort(-1).values, ran.sort(-1).values)
        if normalization == "softmax":
            probs = torch.softmax(logits[layer].float(), -1).view(2, 7, -1)
            assert torch.allclose(token_weights[:, :, j], probs.gather(-1, token_ids[:, :, j]), atol=1e-6)
        else:
            assert torch.allclose(token_weights[:, :, j].sum(-1), torch.ones(2, 7), atol=1e-6)
        assert (token_weights[:, :, j, 0] >= token_weights[:, :, j, 1]).all()  # heaviest first


@pytest.mark.parametrize("normalization", ["softmax", "topk"])
def test_deepseek_v3_records_the_biased_choice(normalization):
    import torch
    from moe_zoo import VOCAB, tiny_moe

    from grokpath.routing import RoutingAccumulator, find_routers

    model = tiny_moe("deepseek_v3")
    routers = find_routers(model)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for router in routers.modules:  # a trained checkpoint's load-balancing bias
            router.e_score_correction_bias.copy_(torch.randn(routers.num_experts, generator=generator) * 2)
    ids = torch.randint(0, VOCAB, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    picks, _ = dispatched_experts(model, routers, ids, mask)
    token_ids, _ = per_token_records(model, ids, mask, normalization)
    with RoutingAccumulator(model, mask, "softmax", keep=True) as routing, torch.no_grad():
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    differing = 0
    for j, layer in enumerate(routers.layers):
        ran = picks[layer].view(3, 9, -1).sort(-1).values
        assert torch.equal(token_ids[:, :, j].sort(-1).values, ran)
        full_top = routing.kept[j][0].topk(routers.top_k, dim=-1).indices.sort(-1).values  # (B, T, k)
        differing += int((full_top != ran).any(-1).sum())
    assert differing >= 5  # the input exercises the case: the unbiased top-k is another set for these tokens


# ---- 9, 10. the monitor and the callback check the model and the probes when they are built ----

MONITOR_WORDS = [f"w{i}" for i in range(36)]


@pytest.fixture(scope="module")
def word_tok():
    from conftest import word_tokenizer

    return word_tokenizer(
        ["<pad>", "<bos>", "<eos>", "<unk>", *MONITOR_WORDS], bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>"
    )


PROBES = {"algebra": ["w1 w2 w3 w4", "w5 w6 w7", "w8 w9 w10 w11 w12"], "python": ["w13 w14 w15", "w16 w17 w18 w19"]}


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()


def test_monitor_refuses_an_unknown_architecture_at_construction(word_tok):
    from moe_zoo import tiny_moe

    from grokpath.monitor import PathwayMonitor

    with pytest.raises(ValueError) as err:
        PathwayMonitor(tiny_gpt2(), PROBES, word_tok)
    message = str(err.value)
    assert "\n" not in message and "model_type 'gpt2'" in message and "router=" in message and "traces.router" not in message
    # an MoE architecture whose every layer is dense
    with pytest.raises(
        ValueError, match=r"model_type 'qwen2_moe' .* has no MoE layer: no module '\*\.layers\.<i>\.mlp\.gate'.*router="
    ):
        PathwayMonitor(tiny_moe("qwen2_moe", mlp_only_layers=[0, 1, 2]), PROBES, word_tok)
    # router= naming a path that is not there
    with pytest.raises(ValueError, match=r"model_type 'gpt2' .* no module '\*\.layers\.<i>\.mlp\.router'"):
        PathwayMonitor(tiny_gpt2(), PROBES, word_tok, router="mlp.router")


def test_callback_refuses_the_model_before_the_first_step(word_tok, tmp_path):
    from moe_zoo import train_with_callback

    from grokpath.callbacks import PathwayMonitorCallback

    with pytest.raises(ValueError, match=r"model_type 'gpt2'.*router="):
        PathwayMonitorCallback(PROBES, word_tok, tmp_path / "a", model=tiny_gpt2())
    callback = PathwayMonitorCallback(PROBES, word_tok, tmp_path / "b")  # no model yet: checked when training begins
    rng = np.random.default_rng(0)
    train = [{"input_ids": (ids := [1, *rng.integers(4, 40, 6).tolist()]), "labels": ids} for _ in range(8)]
    with pytest.raises(ValueError, match=r"model_type 'gpt2'.*router="):
        train_with_callback(tiny_gpt2(), train, callback, tmp_path / "run", max_steps=4, batch_size=2, save_steps=2)
    assert not list((tmp_path / "run").glob("checkpoint-*"))  # stopped before the first save
    assert not (tmp_path / "b" / "monitor.parquet").exists()


def test_probes_of_a_broken_tokenizer_are_refused_naming_the_domain(word_tok, tmp_path):
    from conftest import word_tokenizer
    from moe_zoo import tiny_moe
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    from grokpath.callbacks import PathwayMonitorCallback
    from grokpath.monitor import PathwayMonitor

    model = tiny_moe("mixtral")
    # no pre-tokenizer, no vocabulary: every probe is BOS + one unknown token
    core = Tokenizer(models.WordLevel({"<pad>": 0, "<bos>": 1, "<unk>": 2}, unk_token="<unk>"))
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    single = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", unk_token="<unk>", pad_token="<pad>")
    with pytest.raises(ValueError) as err:
        PathwayMonitor(model, PROBES, single)
    assert str(err.value).startswith("monitor probes of domain 'algebra': probe 0 tokenizes to 1 token(s) besides special ones")
    with pytest.raises(ValueError, match=r"domain 'algebra': probe 0 tokenizes to 1 token"):
        PathwayMonitorCallback(PROBES, single, tmp_path)
    # a tokenizer that splits words but knows few of them: mostly the unknown token
    few = word_tokenizer(["<pad>", "<bos>", "<eos>", "<unk>", "w1", "w13"], bos="<bos>", unk="<unk>", pad="<pad>", eos="<eos>")
    with pytest.raises(ValueError, match=r"domain 'python': 86% of their tokens are the unknown token '<unk>'"):
        PathwayMonitor(model, {"python": PROBES["python"]}, few)
    # an empty probe
    with pytest.raises(ValueError, match=r"domain 'python': probe 1 tokenizes to 0 token"):
        PathwayMonitor(model, {"python": ["w1 w2", ""]}, word_tok)
    # the probes the tokenizer knows give finite rows
    rows = PathwayMonitor(model, PROBES, word_tok).measure(0)
    assert [r["domain"] for r in rows] == ["algebra", "python"] and all(np.isfinite(r["probe_loss"]) for r in rows)
