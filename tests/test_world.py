"""Mini world: determinism, disjoint splits, the contract's text format, the tokenizer."""

from __future__ import annotations

import hashlib
import json

import pytest
from transformers import AutoTokenizer

from grokpath.config import validate
from grokpath.world import build_world, generate_world

DOMAINS = ["math", "code", "commonsense", "domain"]


def world_cfg(**world) -> dict:
    cfg = validate(
        {
            "world": {"modulus": 7, "n_relations": 3, "max_test": 30, "max_validation": 10, **world},
            "domains": {d: {} for d in DOMAINS},
        }
    )
    return {"world": cfg["world"], "domains": cfg["domains"]}


def files_bytes(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        build_world(world_cfg(seed=seed), tmp_path / name / "world", tmp_path / name / "tok")
    a, b, c = (files_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["world/math/train.jsonl"] != c["world/math/train.jsonl"]
    assert a["world/domain/test.jsonl"] != c["world/domain/test.jsonl"]


def test_splits_disjoint_and_format():
    corpus = generate_world(world_cfg()["world"], DOMAINS)
    assert list(corpus) == DOMAINS
    for domain, splits in corpus.items():
        train_texts = {r["text"] for r in splits["train"]}
        train_prompts = {r["prompt"] for r in splits["train"]}
        for split, rows in splits.items():
            assert rows, (domain, split)
            ids = [r["sample_id"] for r in rows]
            assert len(set(ids)) == len(ids)
            for r in rows:
                assert r["text"] == r["prompt"] + r["target"] + "\n"
                assert r["text"].count("\n") == 1 and r["text"].endswith("\n")
                assert r["target"].startswith(" ") and "\n" not in r["target"]
            if split != "train":
                assert not {r["prompt"] for r in rows} & train_prompts, (domain, split)
                assert not {r["text"] for r in rows} & train_texts
        assert not {r["prompt"] for r in splits["validation"]} & {r["prompt"] for r in splits["test"]}


def test_rules_hold():
    p = 7
    corpus = generate_world(world_cfg()["world"], DOMAINS)
    for r in corpus["math"]["test"]:
        a, _, b, _ = r["prompt"].split()
        assert int(r["target"]) == (int(a) + int(b)) % p
    for r in corpus["code"]["test"]:  # the printed output is what Python prints
        program = r["prompt"].removesuffix(" #")
        assert int(r["target"]) == eval(program.replace("print", ""))
    # chemistry: a test compound's mass is the sum of the atomic numbers given in train
    train = corpus["domain"]["train"]
    number = {r["prompt"].split()[2]: int(r["target"]) for r in train if r["prompt"].startswith("number of")}
    assert len(number) == p
    for r in corpus["domain"]["test"]:
        _, _, x, y, _ = r["prompt"].split()
        assert int(r["target"]) == (number[x] + number[y]) % p
    # commonsense: a two-hop answer is the composition of one-hop facts in train
    one_hop = {}
    for r in corpus["commonsense"]["train"]:
        words = r["prompt"].split()
        if len(words) == 5:  # "the <rel> of <person> is"
            one_hop[(words[1], words[3])] = r["target"].strip()
    for r in corpus["commonsense"]["test"]:
        _, r2, _, _, r1, _, person, _ = r["prompt"].split()
        assert r["target"].strip() == one_hop[(r2, one_hop[(r1, person)])]


def test_tokenizer_round_trip_and_bos(tmp_path):
    manifest = build_world(world_cfg(), tmp_path / "world", tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert tok.bos_token and tok.eos_token and tok.pad_token
    assert len(tok) == manifest["vocab_size"] < 200
    for domain in DOMAINS:
        for split in ("train", "validation", "test"):
            for line in (tmp_path / "world" / domain / f"{split}.jsonl").read_text().splitlines():
                row = json.loads(line)
                ids = tok(row["text"])["input_ids"]
                assert ids[0] == tok.bos_token_id
                assert tok.unk_token_id not in ids
                assert tok.decode(ids, skip_special_tokens=True) == row["text"]
                # prompt tokens are a prefix of the text's tokens (greedy decoding continues them)
                prompt_ids = tok(row["prompt"])["input_ids"]
                assert ids[: len(prompt_ids)] == prompt_ids
    assert manifest["counts"]["math"]["train"] == round(0.5 * 49)
    assert (tmp_path / "world" / "manifest.json").is_file()


def test_a_word_is_one_token_wherever_it_stands(tmp_path):
    """The first word of a text carries the same leading "▁" as every later word, so math's
    two operands (and a number in any position of any domain) are one shared token each."""
    build_world(world_cfg(), tmp_path / "world", tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert tok.convert_ids_to_tokens(tok("3 + 3 = 6\n")["input_ids"]) == ["<bos>", "▁3", "▁+", "▁3", "▁=", "▁6", "\n"]
    assert tok.convert_ids_to_tokens(tok("print ( 3 * 5 % 7 ) # 1")["input_ids"])[1:4] == ["▁print", "▁(", "▁3"]
    vocab = tok.get_vocab()
    assert "3" not in vocab and "print" not in vocab  # no unprefixed twin of any word


def test_control_operands_are_its_own_words_or_maths_digits():
    p = 7
    corpus = generate_world(world_cfg()["world"], [*DOMAINS, "control"])
    words = {d: {w for split in corpus[d].values() for r in split for w in r["prompt"].split()} for d in corpus}
    operands = {w for r in corpus["control"]["train"] for w in r["prompt"].split()[::2]}
    assert len(operands) == p and all(w.endswith("q") and not w.isdigit() for w in operands)
    for d in DOMAINS:  # no operand of the null appears in another domain's prompts
        assert not operands & words[d], d
    for r in corpus["control"]["test"]:  # math's shape: two operands, "~", "=", one number
        a, op, b, eq = r["prompt"].split()
        assert (op, eq) == ("~", "=") and 0 <= int(r["target"]) < p
    # digits: the corpus as it was before words existed (sha256 of its train split, written by that code)
    digits = generate_world(world_cfg(control_operands="digits")["world"], ["control"])["control"]["train"]
    blob = "".join(json.dumps(r, sort_keys=True) + "\n" for r in digits).encode()
    assert hashlib.sha256(blob).hexdigest() == "44aa6a6a4ed1689be2c3081f3a93f4e4ffbf897259dbab6609ebb00075aef177"
    assert digits[0]["prompt"] == "0 ~ 3 ="


def test_bad_world_config_names_field():
    with pytest.raises(ValueError, match="train_fraction"):
        generate_world(world_cfg(train_fraction=0.95, validation_fraction=0.1)["world"], ["math"])
    with pytest.raises(ValueError, match="no mini-world generator"):
        generate_world(world_cfg()["world"], ["biology"])


def test_grokking_criterion_hand_made_curves():
    import pandas as pd

    from grokpath.world.criterion import grokking_criterion

    steps = [100, 200, 300, 400, 500, 600]
    curves = pd.DataFrame(
        {
            "domain": ["groks"] * 6 + ["together"] * 6 + ["never"] * 6,
            "step": steps * 3,
            # groks: loss settled (within 0.05 of 0.01) from step 200; accuracy passes 0.9/2 at step 400 -> gap 2
            # together: loss settles at 400, accuracy passes half at 400 -> gap 0
            # never: final accuracy 0.1 is no real rise even though the gap is large
            "train_loss": [1.0, 0.05, 0.02, 0.01, 0.01, 0.01]
            + [2.0, 1.0, 0.5, 0.03, 0.01, 0.01]
            + [1.0, 0.01, 0.01, 0.01, 0.01, 0.01],
            "test_accuracy": [0.0, 0.05, 0.2, 0.5, 0.8, 0.9] + [0.0, 0.1, 0.3, 0.6, 0.7, 0.8] + [0.0, 0.0, 0.0, 0.0, 0.1, 0.1],
        }
    )
    verdict = grokking_criterion(curves).set_index("domain")
    assert verdict.loc["groks", "loss_settled_at"] == 200 and verdict.loc["groks", "accuracy_half_at"] == 400
    assert verdict.loc["groks", "gap_checkpoints"] == 2 and verdict.loc["groks", "groks"]
    assert verdict.loc["together", "gap_checkpoints"] == 0 and not verdict.loc["together", "groks"]
    assert verdict.loc["never", "gap_checkpoints"] == 3 and not verdict.loc["never", "groks"]
    # a loss that leaves the band again is not settled: 0.2 at step 300 moves settling to 400
    bumped = curves.assign(train_loss=[1.0, 0.05, 0.2, 0.01, 0.01, 0.01] * 3)
    assert grokking_criterion(bumped).set_index("domain").loc["groks", "loss_settled_at"] == 400
    with pytest.raises(ValueError, match="test_accuracy"):
        grokking_criterion(curves.drop(columns="test_accuracy"))
