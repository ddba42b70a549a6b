"""The skills world (grokpath.world.skills), routing at the answer position, and the skill-pair test."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO, tiny_olmoe

from grokpath.config import validate
from grokpath.controls import (
    shared_skill_matrix,
    skill_pair_means,
    skill_pairs_checkpoints,
    skill_pairs_summary,
    write_skill_pairs,
)
from grokpath.correlations import distance_matrix
from grokpath.io import write_parquet
from grokpath.seeds import domain_rng
from grokpath.traces import answer_positions, trace_pass, trace_schema
from grokpath.world import generate_world
from grokpath.world.skills import build
from grokpath.world.tokenizer import build_tokenizer

SKILLS_CONFIG = REPO / "config" / "skills.yaml"


# ---------------------------------------------------------------- the pair test, by hand
# A: inc rev "1-2"; B: inc dbl "1-3"; C: neg map "4-5"; D: rev "1-2".
# Pairs sharing a skill: A-B (inc), A-D (rev); the other four share none.
# Char Levenshtein: AB 1, AC 2, AD 0, BC 2, BD 1, CD 2.
LABELS = [["inc", "rev"], ["inc", "dbl"], ["neg", "map"], ["rev"]]
PATHWAYS = ["1-2", "1-3", "4-5", "1-2"]


def test_shared_skill_matrix_by_hand():
    share = shared_skill_matrix(LABELS)
    expected = np.zeros((4, 4), dtype=bool)
    for i, j in [(0, 1), (0, 3)]:
        expected[i, j] = expected[j, i] = True
    np.testing.assert_array_equal(share, expected)


def test_pair_means_by_hand():
    out = skill_pair_means(distance_matrix(PATHWAYS, "char"), shared_skill_matrix(LABELS))
    assert out["mean_share"] == pytest.approx((1 + 0) / 2)
    assert out["mean_none"] == pytest.approx((2 + 2 + 1 + 2) / 4)
    assert out["gap"] == pytest.approx(1.75 - 0.5)
    assert out["mean_all"] == pytest.approx(8 / 6)
    assert (out["n_share"], out["n_none"]) == (2, 4)


def test_pair_means_bootstrap_weights_by_hand():
    # counts A 2, B 1, C 0, D 1: pairs of distinct samples weigh w_i w_j: AB 2 (d 1), AD 2 (d 0) share; BD 1 (d 1) none
    weights = np.array([[2, 1, 0, 1], [1, 1, 1, 1]])
    out = skill_pair_means(distance_matrix(PATHWAYS, "char"), shared_skill_matrix(LABELS), weights)
    np.testing.assert_allclose(out["mean_share"], [(2 * 1 + 2 * 0) / 4, 0.5])
    np.testing.assert_allclose(out["mean_none"], [1.0, 1.75])
    np.testing.assert_allclose(out["gap"], [0.5, 1.25])
    np.testing.assert_allclose(out["n_share"], [4, 2])


def test_pair_checkpoints_views_and_summary_by_hand():
    # four checkpoints: D's pathway walks away from A's
    walks = ["1-2", "1-3", "2-3", "3-4"]
    frames = {
        (f"step{s:06d}", s): pd.DataFrame({"sample_id": list("ABCD"), "pathway": PATHWAYS[:3] + [walks[k]]})
        for k, s in enumerate([10, 20, 40, 80])
    }
    accuracy = {10: 0.9, 20: 0.7, 40: 0.5, 80: 0.1}
    labels = dict(zip("ABCD", LABELS))
    table = skill_pairs_checkpoints(frames, labels, accuracy, "char", 20, 0.95, np.random.default_rng(0))
    first = table[(table["step"] == 10) & (table["view"] == "distance")].iloc[0]
    assert first["gap"] == pytest.approx(1.25) and first["accuracy"] == 0.9
    per_char = table[(table["step"] == 10) & (table["view"] == "distance_per_char")].iloc[0]
    # per character (all strings 3 long): share (1/3 + 0) / 2, none (2/3 + 2/3 + 1/3 + 2/3) / 4
    assert per_char["gap"] == pytest.approx(7 / 12 - 1 / 6)
    # step 20, D = "1-3": share AB 1, AD 1 -> 1; none AC 2, BC 2, BD 0, CD 2 -> 1.5
    second = table[(table["step"] == 20) & (table["view"] == "distance")].iloc[0]
    assert second["gap"] == pytest.approx(0.5)
    assert (table["gap_lo"] <= table["gap_hi"]).all()
    summary = skill_pairs_summary(table.assign(domain="skills", positions="mean"))
    gaps = table[table["view"] == "distance"]["gap"].to_numpy()
    # step 40 "2-3": AD 2 (two substitutions), BD 1, CD 2 -> share (1 + 2) / 2, none (2 + 2 + 1 + 2) / 4
    # step 80 "3-4": AD 2, BD 2, CD 2 -> share 1.5, none 2
    np.testing.assert_allclose(gaps, [1.25, 0.5, 1.75 - 1.5, 2 - 1.5])
    row = summary[(summary["view"] == "distance") & (summary["metric"] == "gap")].iloc[0]
    assert row["pearson"] == pytest.approx(np.corrcoef(gaps, [0.9, 0.7, 0.5, 0.1])[0, 1])
    assert row["diff"] == pytest.approx(np.corrcoef(np.diff(gaps), np.diff([0.9, 0.7, 0.5, 0.1]))[0, 1])


def test_pair_checkpoints_reject_unlabelled_sample():
    frames = {("a", 1): pd.DataFrame({"sample_id": ["A", "Z"], "pathway": ["1", "2"]})}
    with pytest.raises(ValueError, match="sample 'Z' has no skill labels"):
        skill_pairs_checkpoints(frames, {"A": ["inc"]}, {}, "char", 5, 0.95, np.random.default_rng(0))


# ---------------------------------------------------------------- the generator
def skills_world(**overrides) -> dict:
    cfg = validate(yaml.safe_load(SKILLS_CONFIG.read_text()))
    return {**cfg["world"], **overrides}


def test_generator_labels_match_composition_and_text():
    world = skills_world()
    corpus = build(world, domain_rng(world["seed"], "skills"))
    for split, rows in corpus.items():
        assert rows, split
        for row in rows:
            assert row["text"] == row["prompt"] + row["target"] + "\n"
            words = row["prompt"].split()
            n = len(row["skills"])
            assert words[:n] == row["skills"] and words[-1] == "="
            assert len(words) == n + world["skills_length"] + 1
            assert len(set(row["skills"])) == n  # distinct primitives


def test_primitives_by_hand():
    from grokpath.world.skills import apply_skills, primitive_functions

    functions = primitive_functions(7, list(range(7)))
    assert apply_skills(["inc", "rev"], (1, 2, 3), functions) == (4, 3, 2)  # rev(2 3 4)
    assert apply_skills(["dbl", "neg"], (1, 2, 5), functions) == (5, 3, 4)  # -(2 4 3) mod 7
    assert apply_skills(["add3", "rot", "swap"], (6, 0, 2), functions) == (5, 3, 2)  # (2 3 5) -> (3 5 2) -> (5 3 2)
    assert apply_skills(["rev", "map"], (0, 1, 6), primitive_functions(7, [3, 1, 4, 0, 5, 6, 2])) == (2, 1, 3)


def test_generator_targets_follow_the_rule_with_its_permutation():
    from grokpath.world.skills import apply_skills, primitive_functions

    world = skills_world()
    corpus = build(world, domain_rng(world["seed"], "skills"))
    # the map table read off the train atoms "map a b c = x y z", then every record recomputed with it
    table = {}
    for row in corpus["train"]:
        if row["skills"] == ["map"]:
            ops = [int(x) for x in row["prompt"].split()[1:-1]]
            table.update(zip(ops, (int(x) for x in row["target"].split())))  # an atom's target is one step
    assert sorted(table) == list(range(7)) and sorted(table.values()) == list(range(7))
    functions = primitive_functions(7, [table[i] for i in range(7)])
    for row in (r for rows in corpus.values() for r in rows):
        ops = tuple(int(x) for x in row["prompt"].split()[len(row["skills"]) : -1])
        steps = [" ".join(map(str, apply_skills(row["skills"][: k + 1], ops, functions))) for k in range(len(row["skills"]))]
        assert row["target"] == " " + " = ".join(steps)  # the steps format: the sequence after every primitive


def test_generator_test_compositions_unseen_and_skills_seen():
    world = skills_world()
    corpus = generate_world(world, ["skills"])["skills"]
    train = {tuple(r["skills"]) for r in corpus["train"] if len(r["skills"]) > 1}
    held_out = {tuple(r["skills"]) for split in ("validation", "test") for r in corpus[split]}
    assert held_out and not (held_out & train)
    train_skills = {s for r in corpus["train"] for s in r["skills"]}
    assert {s for c in held_out for s in c} <= train_skills
    assert all(2 <= len(c) <= 3 for c in held_out)
    # the same seed gives the same bytes
    again = generate_world(world, ["skills"])["skills"]
    assert json.dumps(again, sort_keys=True) == json.dumps(corpus, sort_keys=True)


def test_generator_rejects_bad_depth():
    with pytest.raises(ValueError, match="world.skills_depth"):
        build(skills_world(skills_depth=[3, 9]), np.random.default_rng(0))


# ---------------------------------------------------------------- routing at the answer position
def test_answer_positions_are_the_last_prompt_token():
    records = [
        {"sample_id": "a", "prompt": "inc 1 2 3 =", "text": "inc 1 2 3 = 2 3 4\n"},
        {"sample_id": "b", "prompt": "rev neg 0 1 2 =", "text": "rev neg 0 1 2 = 5 6 0\n"},
    ]
    tokenizer = build_tokenizer([r["text"] for r in records])
    ids = tokenizer([r["text"] for r in records])["input_ids"]
    positions = answer_positions(tokenizer, records, ids)
    assert positions == [5, 6]  # <bos> inc 1 2 3 = ... : "=" at 5; <bos> rev neg 0 1 2 = : at 6
    assert [tokenizer.convert_ids_to_tokens(i[p]) for i, p in zip(ids, positions)] == ["▁=", "▁="]


def test_routing_at_position_equals_a_direct_hook():
    model = tiny_olmoe(seed=3, vocab_size=30).eval()
    input_ids = torch.tensor([[1, 5, 6, 7, 8, 9], [1, 4, 3, 2, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    positions = torch.tensor([4, 2])
    captured = {}
    gates = [layer.mlp.gate for layer in model.model.layers]
    handles = [
        g.register_forward_hook(lambda m, inp, out, i=i: captured.__setitem__(i, inp[0].clone())) for i, g in enumerate(gates)
    ]
    try:
        result = trace_pass(model, input_ids, attention_mask, positions=positions)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        expected = torch.stack(
            [
                torch.stack(
                    [
                        F.softmax(F.linear(captured[i].reshape(2, 6, -1)[b, positions[b]], gates[i].weight), -1)
                        for i in range(len(gates))
                    ]
                )
                for b in range(2)
            ]
        )  # (B, L, K)
    torch.testing.assert_close(result.routing_at, expected, rtol=1e-5, atol=1e-6)
    # the token mean is unchanged by the option and differs from the one position
    plain = trace_pass(model, input_ids, attention_mask)
    torch.testing.assert_close(result.routing, plain.routing)
    assert plain.routing_at is None and not torch.allclose(result.routing, result.routing_at)


# ---------------------------------------------------------------- file to file
def _trace_file(path, ckpt, step, ids, mean_experts, answer_experts, step_experts):
    """A trace file with L = 2, K = 4: routing 0.9 on the listed expert of each layer (so the pathway is "a-b");
    ``step_experts`` holds a list of such pairs per sample (column routing_steps)."""

    def routing(experts):
        out = np.full((len(experts), 2, 4), 0.1 / 3, dtype=np.float32)
        for i, (a, b) in enumerate(experts):
            out[i, 0, a] = out[i, 1, b] = 0.9
        return pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1)), 8)

    offsets = np.concatenate([[0], np.cumsum([len(e) for e in step_experts])]).astype(np.int32)
    steps = pa.ListArray.from_arrays(pa.array(offsets), routing([pair for pairs in step_experts for pair in pairs]))

    n = len(ids)
    table = pa.Table.from_arrays(
        [
            pa.array(ids).dictionary_encode(),
            pa.array(["skills"] * n).dictionary_encode(),
            pa.array(["train"] * n).dictionary_encode(),
            pa.array([ckpt] * n),
            pa.array([step] * n, pa.int64()),
            pa.array([None] * n, pa.string()),
            pa.array([5] * n, pa.int32()),
            pa.array([1.0] * n, pa.float32()),
            routing(mean_experts),
            routing(answer_experts),
            steps,
        ],
        schema=trace_schema(8, ("answer", "steps")),
    )
    write_parquet(table, path, {"L": 2, "K": 4})


def test_write_skill_pairs_reads_every_position(tmp_path):
    ids = list("ABCD")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"sample_id": s, "skills": k}) + "\n" for s, k in zip(ids, LABELS)))
    # mean: pathways with the hand distances of LABELS/PATHWAYS above; answer: every sample routed alike
    mean = [(0, 1), (0, 2), (3, 3), (0, 1)]  # "0-1","0-2","3-3","0-1": AB 1, AC 2, AD 0, BC 2, BD 1, CD 2
    same = [(2, 2)] * 4
    # steps: each step routed by the skill it applies: inc "0-0", rev "1-1", dbl "2-2", neg "3-3", map "0-1"
    by_skill = {"inc": (0, 0), "rev": (1, 1), "dbl": (2, 2), "neg": (3, 3), "map": (0, 1)}
    steps = [[by_skill[s] for s in labels] for labels in LABELS]
    paths = []
    for ckpt, step in [("step000010", 10), ("step000020", 20)]:
        path = tmp_path / ckpt / "skills_train.parquet"
        _trace_file(path, ckpt, step, ids, mean, same, steps)
        paths.append(path)
    pd.DataFrame({"domain": ["skills", "skills"], "step": [10, 20], "accuracy": [0.25, 0.5]}).to_parquet(
        tmp_path / "curves.parquet"
    )
    cfg = validate(yaml.safe_load(SKILLS_CONFIG.read_text()))
    out = write_skill_pairs(
        cfg,
        "skills",
        tmp_path / "train.jsonl",
        paths,
        tmp_path / "curves.parquet",
        tmp_path / "p.csv",
        tmp_path / "s.csv",
        tmp_path / "p.md",
    )
    plain = out[(out["positions"] == "mean") & (out["view"] == "distance")]
    np.testing.assert_allclose(plain["gap"], [1.25, 1.25])
    np.testing.assert_allclose(plain["accuracy"], [0.25, 0.5])
    answer = out[(out["positions"] == "answer") & (out["view"] == "distance")]
    np.testing.assert_allclose(answer["gap"], [0.0, 0.0])
    assert pd.read_csv(tmp_path / "s.csv")["positions"].tolist().count("answer") == 4  # 2 views x (gap, mean_all)
    # steps: units A0 inc, A1 rev, B0 inc, B1 dbl, C0 neg, C1 map, D0 rev; pairs within a sample left out (18 of 21).
    # Same skill: A0-B0, A1-D0, both at distance 0. The 16 others: 4 at distance 1 (each with map's "0-1"), 12 at 2.
    units = out[(out["positions"] == "steps") & (out["view"] == "distance")]
    np.testing.assert_allclose(units["mean_share"], [0.0, 0.0])
    np.testing.assert_allclose(units["mean_none"], [28 / 16, 28 / 16])
    np.testing.assert_allclose(units["mean_all"], [28 / 18, 28 / 18])
    assert units["n_samples"].tolist() == [7, 7] and units["n_share"].tolist() == [2, 2] and units["n_none"].tolist() == [16, 16]


def test_write_skill_pairs_names_a_record_without_labels(tmp_path):
    from grokpath.data import DataError

    (tmp_path / "train.jsonl").write_text(json.dumps({"sample_id": "A", "text": "x\n"}) + "\n")
    pd.DataFrame({"domain": ["skills"], "step": [1], "accuracy": [0.0]}).to_parquet(tmp_path / "curves.parquet")
    cfg = validate(yaml.safe_load(SKILLS_CONFIG.read_text()))
    with pytest.raises(DataError, match="field 'skills'"):
        write_skill_pairs(
            cfg, "skills", tmp_path / "train.jsonl", [], tmp_path / "curves.parquet", *(tmp_path / n for n in "abc")
        )


# ---------------------------------------------------------------- the workflow
def _dry_run(tmp_path, *configfiles) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [
        str(REPO / ".venv" / "bin" / "snakemake"),
        "-n",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "1",
        "--configfile",
        *map(str, configfiles),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_skills_study_dry_run_has_the_pair_test(tmp_path):
    out = _dry_run(tmp_path, SKILLS_CONFIG)
    assert "rule skill_pairs:" in out and "results/tables/skill_pairs_skills.csv" in out
    assert "results/world/skills/train.jsonl" in out


def test_default_study_dry_run_has_no_pair_test(tmp_path):
    out = _dry_run(tmp_path, REPO / "config" / "config.yaml")
    assert "skill_pairs" not in out


def test_seeds_study_runs_the_pair_test_only_for_the_skills_world():
    from grokpath.seeds_study import skill_targets

    skills_cfg = validate(yaml.safe_load(SKILLS_CONFIG.read_text()))
    assert skill_targets(skills_cfg) == ["results/tables/skill_pairs_skills.csv", "results/tables/skill_pairs_skills_summary.csv"]
    default_cfg = validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert skill_targets(default_cfg) == []


# ---------------------------------------------------------------- the steps format and routing at each step
def test_steps_format_writes_every_intermediate_sequence_and_its_offsets():
    world = skills_world(skills_format="steps")
    corpus = build(world, domain_rng(world["seed"], "skills"))
    direct = build(skills_world(skills_format="direct"), domain_rng(world["seed"], "skills"))
    for split, rows in corpus.items():
        for row, plain in zip(rows, direct[split]):
            # the same draws as the direct format; its answer is the steps format's last step
            assert row["prompt"] == plain["prompt"] and row["skills"] == plain["skills"]
            steps = row["target"].split(" = ")
            assert len(steps) == len(row["skills"]) and " " + steps[-1].strip() == plain["target"]
            assert "step_offsets" not in plain and len(row["step_offsets"]) == len(row["skills"])
            for offset, step in zip(row["step_offsets"], steps):
                assert row["text"][offset:].startswith(step.strip()) and row["text"][offset - 1] == " "


def test_steps_format_by_hand():
    from grokpath.world.skills import _row, primitive_functions

    row = _row(("dbl", "inc"), (4, 3, 6), primitive_functions(7, list(range(7))), steps=True)
    # dbl: 8 6 12 -> 1 6 5; inc: 2 7 6 -> 2 0 6
    assert row["prompt"] + row["target"] == "dbl inc 4 3 6 = 1 6 5 = 2 0 6"
    assert row["step_offsets"] == [16, 24]


def test_step_positions_are_the_tokens_before_each_step():
    from grokpath.traces import step_positions

    text = "dbl inc 4 3 6 = 1 6 5 = 2 0 6\n"
    records = [{"sample_id": "a", "text": text, "step_offsets": [16, 24]}]
    tokenizer = build_tokenizer([text])
    ids = tokenizer([text])["input_ids"]
    # <bos> dbl inc 4 3 6 = 1 6 5 = 2 0 6 \n: the two "=" at 6 and 10
    assert step_positions(tokenizer, records, ids, "t") == [[6, 10]]
    assert answer_positions(tokenizer, [{**records[0], "prompt": "dbl inc 4 3 6 ="}], ids) == [6]
    from grokpath.data import DataError

    with pytest.raises(DataError, match="field 'step_offsets' entry 24"):
        step_positions(tokenizer, records, [ids[0][:10]], "t")  # truncated before the second step
    # a split without steps (the control domain) gets none; within a split with steps, each record needs them
    assert step_positions(tokenizer, [{"sample_id": "b", "text": text}], ids, "t") == [[]]
    with pytest.raises(DataError, match="sample 'b': field 'step_offsets' missing"):
        step_positions(tokenizer, [records[0], {"sample_id": "b", "text": text}], ids * 2, "t")


def test_routing_at_several_positions_equals_one_at_a_time():
    model = tiny_olmoe(seed=3, vocab_size=30).eval()
    input_ids = torch.tensor([[1, 5, 6, 7, 8, 9], [1, 4, 3, 2, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    both = trace_pass(model, input_ids, attention_mask, positions=torch.tensor([[4, 1], [2, 3]]))
    assert both.routing_at.shape == (2, 2, model.config.num_hidden_layers, model.config.num_experts)
    for column in range(2):
        one = trace_pass(model, input_ids, attention_mask, positions=torch.tensor([[4, 1], [2, 3]])[:, column])
        torch.testing.assert_close(both.routing_at[:, column], one.routing_at)


def test_run_traces_writes_routing_at_every_step(tmp_path):
    import pyarrow.parquet as pq

    from grokpath.config import load_schema
    from grokpath.traces import run_traces

    world = skills_world(skills_format="steps")
    corpus = build(world, domain_rng(world["seed"], "skills"))
    records = {split: rows[:5] for split, rows in corpus.items()}
    tokenizer = build_tokenizer([r["text"] for rows in corpus.values() for r in rows])
    model = tiny_olmoe(seed=1, vocab_size=len(tokenizer)).eval()
    with torch.no_grad():  # routers start at zero: give them weights so routing differs between positions
        for layer in model.model.layers:
            layer.mlp.gate.weight.normal_(0, 1.0)
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    direct = build(skills_world(skills_format="direct"), domain_rng(world["seed"], "skills"))
    domains = {"skills": {}, "plain": {}}  # plain: records without steps, as the control domain's
    for split, rows in records.items():
        for domain, part in (("skills", rows), ("plain", direct[split][:3])):
            path = tmp_path / f"{domain}_{split}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in part))
            domains[domain][split] = str(path)
    cfg = validate({"domains": domains, "traces": {"positions": ["mean", "answer", "steps"], "max_length": 32}}, load_schema())
    run_traces(cfg, tmp_path / "ckpt", "step000001", tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "skills_train.parquet").to_pylist()
    by_id = {r["sample_id"]: r for r in records["train"]}
    for row in table:
        record = by_id[row["sample_id"]]
        steps = np.array(row["routing_steps"])
        assert steps.shape == (len(record["skills"]), model.config.num_hidden_layers * model.config.num_experts)
        np.testing.assert_allclose(steps[0], row["routing_answer"], rtol=1e-6)  # step 1 applies at the prompt's "="
        ids = tokenizer([record["text"]], return_tensors="pt")["input_ids"]
        at = [i for i, t in enumerate(tokenizer.convert_ids_to_tokens(ids[0])) if t == "▁="]
        alone = trace_pass(model, ids, torch.ones_like(ids), positions=torch.tensor([at]))
        np.testing.assert_allclose(steps, alone.routing_at[0].reshape(len(at), -1).numpy(), rtol=1e-5, atol=1e-6)
    plain = pq.read_table(tmp_path / "out" / "plain_train.parquet").to_pylist()
    assert len(plain) == 3 and all(row["routing_steps"] == [] and len(row["routing_answer"]) > 0 for row in plain)


def test_pair_test_over_step_units_by_hand():
    # units: A#0 inc, A#1 rev; B#0 inc; C#0 rev, C#1 dbl. Pairs within A and within C are left out.
    frames = {("s1", 1): pd.DataFrame({"sample_id": ["A#0", "A#1", "B#0", "C#0", "C#1"], "pathway": ["1", "2", "1", "3", "4"]})}
    labels = {"A#0": ["inc"], "A#1": ["rev"], "B#0": ["inc"], "C#0": ["rev"], "C#1": ["dbl"]}
    samples = {"A#0": "A", "A#1": "A", "B#0": "B", "C#0": "C", "C#1": "C"}
    table = skill_pairs_checkpoints(frames, labels, {1: 0.5}, "char", 50, 0.95, np.random.default_rng(0), samples)
    row = table[table["view"] == "distance"].iloc[0]
    # same skill: A#0-B#0 (d 0), A#1-C#0 (d 1); different: A#0-C#0, A#0-C#1, A#1-B#0, B#0-C#0, B#0-C#1, A#1-C#1 (all d 1)
    assert (row["n_share"], row["n_none"]) == (2, 6)
    assert row["mean_share"] == pytest.approx(0.5) and row["mean_none"] == pytest.approx(1.0)
    assert row["gap"] == pytest.approx(0.5) and row["gap_lo"] <= row["gap_hi"]
