"""Data stage: selection from local files in each dataset's real columns (data.source: local)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from grokpath.cli import main
from grokpath.config import validate
from grokpath.data import SKIP_REASONS, DataError, read_split
from grokpath.io import read_metadata
from grokpath.selection import (
    gather_manifest,
    keyword_hits,
    select_domain,
    select_tuning,
)
from grokpath.standin.data import HUMANEVAL, MATH_CONFIGS, write_standin_data
from grokpath.step import run_step

DOMAINS = ["math", "code", "commonsense", "domain"]
SETS = ["metamathqa", "codealpaca", "alpaca-cleaned"]


def whitespace_tokenizer(directory: Path) -> Path:
    """A tokenizer whose token count is len(text.split()): the length window is hand-checkable."""
    tk = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("standin")
    write_standin_data(root / "local", seed=0, n=40)
    return {"local": root / "local", "tokenizer": whitespace_tokenizer(root / "tok")}


def counts_of(**nonzero) -> dict:
    """A source's counts: every skip reason 0 unless given, in the stage's key order."""
    windows = {k: nonzero.pop(k) for k in ("documents", "windows") if k in nonzero}
    base = {"read": 0, "filtered": 0, **dict.fromkeys(SKIP_REASONS, 0), "kept": 0, "beyond_n": 0}
    return {**base, **nonzero, **windows}


def make_cfg(standin, **data) -> dict:
    base = {
        "source": "local",
        "local_dir": str(standin["local"]),
        "tokenizer": {"path": str(standin["tokenizer"])},
        "n_train": 1000,
        "n_validation": 1000,
        "min_tokens": 8,
        "max_tokens": 400,
    }
    return validate({"data": {**base, **data}})


@pytest.fixture(scope="module")
def selected(standin, tmp_path_factory) -> dict:
    """Every domain and tuning set selected with n large enough to read every row."""
    out = tmp_path_factory.mktemp("data")
    cfg = make_cfg(standin)
    stats = {d: select_domain(cfg, d, out / d, out / d / "manifest.parquet") for d in DOMAINS}
    for name in SETS:
        stats[name] = select_tuning(cfg, name, out / "tuning" / f"{name}.jsonl", out / "tuning" / f"{name}.manifest.parquet")
    parts = [out / d / "manifest.parquet" for d in DOMAINS] + [out / "tuning" / f"{s}.manifest.parquet" for s in SETS]
    gather_manifest(parts, out / "manifest.parquet")
    return {"out": out, "stats": stats, "cfg": cfg}


def test_training_side_counts_dedup_and_length_window(selected):
    # each training-side file: 40 rows + one too long + one too short + 2 exact duplicates
    for domain in ("math", "code"):
        counts = selected["stats"][domain]["train"]
        want = counts_of(read=44, duplicate_text=2, too_short=1, too_long=1, kept=40)
        assert counts == want, domain
        records = read_split(selected["out"] / domain / "train.jsonl")
        assert len(records) == 40
        assert all(8 <= len(r["text"].split()) <= 400 for r in records)
        assert len({r["text"] for r in records}) == 40
    # the test side is kept whole: no window, no filter
    assert selected["stats"]["math"]["test"]["kept"] == 3 * len(MATH_CONFIGS)


def test_books_are_cut_into_windows(selected):
    # 40 stand-in books of about 1,345 words (whitespace tokens) + one 2-word "book" + 2 exact
    # duplicates; max_tokens 400: 3 full windows per book (the tail is left), cap 4 keeps all 3
    counts = selected["stats"]["commonsense"]["train"]
    assert counts == counts_of(read=43, duplicate_text=2, too_short=1, kept=120, documents=41, windows=121)
    records = read_split(selected["out"] / "commonsense" / "train.jsonl")
    assert all(len(r["text"].split()) == 400 for r in records)
    manifest = pd.read_parquet(selected["out"] / "commonsense" / "manifest.parquet")
    train = manifest[manifest.split == "train"]
    offsets = train.groupby("source_row_id").source_offset.apply(sorted)
    assert all(o == [0, 400, 800] for o in offsets)
    assert train.source_row_id.nunique() == 40
    assert (
        train.sample_id == "commonsense-train-" + train.source_row_id + "@" + train.source_offset.astype(int).astype(str)
    ).all()
    # a window is the document's own text: the first window is the book's first 400 words
    books = {
        json.loads(x)["id"]: json.loads(x)["text"] for x in (standin_path(selected) / "train.jsonl").read_text().splitlines()
    }
    first = records[0]["sample_id"].removeprefix("commonsense-train-").split("@")
    doc_words = books[first[0]].split()
    assert records[0]["text"].split() == doc_words[int(first[1]) : int(first[1]) + 400]
    assert records[0]["text"] in books[first[0]]


def standin_path(selected) -> Path:
    return Path(selected["cfg"]["data"]["local_dir"]) / "commonsense"


def test_book_length_documents_give_n_train_windows_from_many_documents(tmp_path):
    """30 documents of 50,000 tokens each; n_train 100, windows of 400 tokens, at most 4 per document:
    100 samples from 25 documents, at offsets 0, 12,400, 24,800 and 37,200 (125 full windows,
    picks i * 125 // 4 for i < 4)."""
    local = tmp_path / "local"
    (local / "commonsense").mkdir(parents=True)
    rows = [{"id": f"book-{d}", "text": " ".join(f"w{d}x{k}" for k in range(50_000))} for d in range(30)]
    (local / "commonsense" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(whitespace_tokenizer(tmp_path / "tok"))
    cfg = validate({"data": {"source": "local", "local_dir": str(local), "n_train": 100, "min_tokens": 8, "max_tokens": 400}})
    from grokpath.selection import select_source

    spec = {**cfg["data"]["domains"]["commonsense"]["train"], "data_files": None, "path": "json"}
    assert spec["windows"] == {"max_per_document": 4}  # the schema default of the books source
    records, manifest, counts = select_source(
        cfg["data"], spec, domain="commonsense", split="train", n=100, tokenizer=tokenizer,
        local_stem="commonsense/train", label="books", sample_prefix="commonsense-train", window=True, shuffle=False,
    )  # fmt: skip
    assert counts["kept"] == 100 and counts["documents"] == 25
    frame = pd.DataFrame(manifest)
    assert frame.source_row_id.nunique() == 25 and frame.groupby("source_row_id").size().eq(4).all()
    assert sorted(frame[frame.source_row_id == "book-0"].source_offset) == [0, 12_400, 24_800, 37_200]
    assert records[1]["text"].split() == [f"w0x{k}" for k in range(12_400, 12_800)]
    assert (frame.n_tokens == 400).all()


def test_repeated_source_id_is_skipped_and_counted(tmp_path, standin):
    local = tmp_path / "local"
    (local / "math").mkdir(parents=True)
    text = "one two three four five six seven eight nine ten eleven twelve"
    rows = [
        {"url": "https://a.example/1", "text": text + " a"},
        {"url": "https://a.example/2", "text": text + " b"},
        {"url": "https://a.example/1", "text": text + " c"},  # same url, other text
    ]
    (local / "math" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = make_cfg(standin, local_dir=str(local))
    from grokpath.selection import select_source

    records, manifest, counts = select_source(
        cfg["data"], cfg["data"]["domains"]["math"]["train"], domain="math", split="train", n=10,
        tokenizer=PreTrainedTokenizerFast.from_pretrained(standin["tokenizer"]), local_stem="math/train",
        label="math", sample_prefix="math-train", window=True, shuffle=False,
    )  # fmt: skip
    assert counts["duplicate_id"] == 1 and counts["kept"] == 2
    assert [r["text"][-1] for r in records] == ["a", "b"]  # the first row with the id is kept


def test_mediawiki_organic_chemistry_filter(selected):
    counts = selected["stats"]["domain"]["train"]
    # 80 pages, half about organic chemistry; the long and the short extra page both pass the
    # keyword filter and then fail the window; two duplicates of chemistry pages
    assert counts == counts_of(read=84, filtered=40, duplicate_text=2, too_short=1, too_long=1, kept=40)
    records = read_split(selected["out"] / "domain" / "train.jsonl")
    assert all("organic chemistry" in r["text"].lower() for r in records)
    assert all(r["sample_id"].startswith("domain-train-wiki-") for r in records)


def test_flan_commonsense_filter_on_task_name(selected):
    # 60 flan rows over 6 task names; sst2 and trivia_qa (20 rows) are outside the commonsense cluster
    assert selected["stats"]["commonsense"]["validation"]["filtered"] == 20
    assert selected["stats"]["commonsense"]["validation"]["kept"] == 40


def test_keyword_hits_counts_fields_and_nested_paths():
    flt = {"fields": ["text", "metadata.title"], "keywords": ["organic chemistry"], "case_sensitive": False}
    row = {"text": "Organic chemistry and organic Chemistry.", "metadata": json.dumps({"title": "Organic chemistry"})}
    assert keyword_hits(row, flt) == 3
    assert keyword_hits(row, {**flt, "case_sensitive": True}) == 0
    assert keyword_hits({"text": "inorganic"}, flt) == 0


def test_test_records_keep_benchmark_fields(selected):
    out = selected["out"]
    math = read_split(out / "math" / "test_unfiltered.jsonl")
    assert math[0]["sample_id"] == "math-test-algebra/0"
    assert all(r["text"] == r["problem"] + "\n" + r["solution"] for r in math)
    assert {r["type"] for r in math} == {c.replace("_", " ").title() for c in MATH_CONFIGS}
    assert all({"problem", "solution", "level", "type"} <= set(r) for r in math)

    code = read_split(out / "code" / "test_unfiltered.jsonl")
    assert [r["sample_id"] for r in code] == [f"code-test-HumanEval/{i}" for i in range(len(HUMANEVAL))]
    for r in code:
        assert r["text"] == r["prompt"] + r["canonical_solution"]
        scope: dict = {}
        exec(r["prompt"] + r["canonical_solution"] + r["test"] + f"\ncheck({r['entry_point']})\n", scope)  # noqa: S102 - our own stand-in code; raises if wrong

    csqa = read_split(out / "commonsense" / "test_unfiltered.jsonl")  # read from Parquet (nested choices)
    for r in csqa:
        assert r["choices"]["label"] == list("ABCDE")
        answer = r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])]
        assert r["text"] == r["question"] + " " + answer
        assert r["sample_id"] == f"commonsense-test-{r['id']}" and "question_concept" in r

    mmlu = read_split(out / "domain" / "test_unfiltered.jsonl")
    assert len(mmlu) == 20
    for i, r in enumerate(mmlu):
        assert isinstance(r["answer"], int) and r["answer"] == i % 4 and len(r["choices"]) == 4
        assert r["text"] == r["question"] + " " + r["choices"][r["answer"]] and r["subject"] == "college_chemistry"


def test_tuning_sets_fields(selected):
    meta = read_split(selected["out"] / "tuning" / "metamathqa.jsonl")
    for r in meta:
        assert set(r) == {"sample_id", "text", "instruction", "input", "output"}
        assert r["input"] == "" and r["instruction"].startswith("What is ") and "The answer is:" in r["output"]
        assert r["text"] == r["instruction"] + "\n" + r["output"]
    alpaca = read_split(selected["out"] / "tuning" / "alpaca-cleaned.jsonl")
    with_input = [r for r in alpaca if r["input"]]
    assert with_input and all(r["text"] == r["instruction"] + "\n" + r["input"] + "\n" + r["output"] for r in with_input)
    code = read_split(selected["out"] / "tuning" / "codealpaca.jsonl")
    assert code and all(r["input"] == "" and r["text"] == r["instruction"] + "\n" + r["output"] for r in code)
    assert code[0]["instruction"].startswith("Write a Python function") and code[0]["output"].startswith("def f(x):")
    counts = selected["stats"]["metamathqa"]
    assert counts["kept"] + counts["duplicate_text"] == 40 and counts["kept"] == len(meta)


def test_manifest_matches_files_and_hashes(selected, standin):
    out = selected["out"]
    manifest = pd.read_parquet(out / "manifest.parquet")
    files = {(d, s): out / d / f"{s}.jsonl" for d in DOMAINS for s in ("train", "validation", "test_unfiltered")}
    files.update({("tuning", s): out / "tuning" / f"{s}.jsonl" for s in SETS})
    assert set(zip(manifest.domain, manifest.split)) == set(files)
    for (domain, split), path in files.items():
        records = read_split(path)
        rows = manifest[(manifest.domain == domain) & (manifest.split == split)]
        assert list(rows.sample_id) == [r["sample_id"] for r in records]
        assert list(rows.text_sha256) == [hashlib.sha256(r["text"].encode()).hexdigest() for r in records]
        assert list(rows.n_tokens) == [len(r["text"].split()) for r in records]
    owm = manifest[(manifest.domain == "math") & (manifest.split == "train")]
    file_sha = hashlib.sha256((standin["local"] / "math" / "train.jsonl").read_bytes()).hexdigest()[:16]
    assert set(owm.source_revision) == {f"sha256:{file_sha}"} and set(owm.source_dataset) == {"open-web-math/open-web-math"}
    assert set(owm.source_row_id) <= {f"https://math.example.org/post/{i}" for i in range(44)}
    math_test = manifest[(manifest.domain == "math") & (manifest.split == "test_unfiltered")]
    assert (
        list(math_test.source_config[:3]) == ["algebra"] * 3 and math_test.source_row_id.iloc[3] == "counting_and_probability/0"
    )
    counts = read_metadata(out / "manifest.parquet")["counts"]
    assert counts["domain"]["train"]["filtered"] == 40 and counts["tuning/metamathqa"]["read"] == 40


def test_seed_determinism(standin, tmp_path):
    def pick(seed, name):
        cfg = make_cfg(standin, n_train=10, n_validation=5, seed=seed)
        select_domain(cfg, "math", tmp_path / name, tmp_path / name / "m.parquet")
        return (tmp_path / name / "train.jsonl").read_bytes()

    first, again, other = pick(0, "a"), pick(0, "b"), pick(1, "c")
    assert first == again
    assert first != other
    ids = [json.loads(line)["sample_id"] for line in first.decode().splitlines()]
    assert len(ids) == 10 and len(set(ids)) == 10


def test_missing_column_and_missing_file_are_named(standin, tmp_path):
    cfg = make_cfg(standin)
    cfg["data"]["domains"]["math"]["train"]["text_fields"] = ["body"]
    with pytest.raises(
        DataError,
        match=r"data\.domains\.math\.train: '.*math/train\.jsonl': 44 of 44 rows .* missing_text .* has no column 'body'",
    ):
        select_domain(cfg, "math", tmp_path / "x", tmp_path / "x" / "m.parquet")
    cfg = make_cfg(standin, local_dir=str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"data\.domains\.math\.train: local file .*math/train"):
        select_domain(cfg, "math", tmp_path / "y", tmp_path / "y" / "m.parquet")
    assert not (tmp_path / "y" / "train.jsonl").exists()
    # a bad test-side source fails before the training side is read or written
    cfg = make_cfg(standin)
    cfg["data"]["domains"]["domain"]["test"]["local"] = "domain/missing"
    with pytest.raises(DataError, match=r"data\.domains\.domain\.test: local file .*domain/missing"):
        select_domain(cfg, "domain", tmp_path / "z", tmp_path / "z" / "m.parquet")
    cfg["data"]["domains"]["domain"]["test"]["local"] = None
    cfg["data"]["domains"]["domain"]["test"]["format"] = "mcq"
    with pytest.raises(DataError, match=r"data\.domains\.domain\.test\.format is 'mcq'"):
        select_domain(cfg, "domain", tmp_path / "z", tmp_path / "z" / "m.parquet")
    assert not (tmp_path / "z").exists()


def test_cli_standin_and_select_step(tmp_path, capsys):
    assert main(["standin-data", str(tmp_path / "local"), "--n", "12"]) == 0
    printed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert printed["code/test.jsonl"] == str(tmp_path / "local" / "code" / "test.jsonl")
    assert len(Path(printed["code/test.jsonl"]).read_text().splitlines()) == len(HUMANEVAL)
    tok = whitespace_tokenizer(tmp_path / "tok")
    cfg = {
        "data": {
            "source": "local",
            "local_dir": str(tmp_path / "local"),
            "tokenizer": {"path": str(tok)},
            "n_train": 5,
            "n_validation": 5,
            "min_tokens": 8,
            "max_tokens": 400,
        }
    }
    validate(cfg)
    # what rule select_data hands over
    names = {"domain": "code", "out_dir": str(tmp_path / "code"), "manifest_out": str(tmp_path / "code" / "manifest.parquet")}
    assert run_step("grokpath.selection:select_domain", {**names, "cfg": cfg}) == 0
    assert len(read_split(tmp_path / "code" / "train.jsonl")) == 5
    assert pq.read_table(tmp_path / "code" / "manifest.parquet").num_rows == 5 + 5 + len(HUMANEVAL)
    bad = json.loads(json.dumps(cfg))
    bad["data"]["domains"] = {}
    assert run_step("grokpath.selection:select_domain", {**names, "cfg": bad}) == 2  # one line naming data.domains.code


def test_data_stage_dag(tmp_path):
    """olmoe.yaml with data.source local: one select job per domain and tuning set, the filter on the last checkpoint."""
    from conftest import REPO, make_workdir, run_snakemake

    overlay = tmp_path / "local.yaml"
    overlay.write_text("data:\n  source: local\n  local_dir: standin/data\n")
    workdir = make_workdir(tmp_path / "w")
    proc = run_snakemake(
        workdir,
        "-n",
        "results/data/manifest.parquet",
        "results/data/contamination.parquet",
        "--configfile",
        str(REPO / "config" / "olmoe.yaml"),
        str(overlay),
    )
    out = proc.stdout + proc.stderr
    counts = dict(
        re.findall(r"^(select_data|select_tuning|data_manifest|contamination|fetch_checkpoint)\s+(\d+)$", out, re.MULTILINE)
    )
    assert counts == {
        "select_data": "4",
        "select_tuning": "3",
        "data_manifest": "1",
        "contamination": "1",
        "fetch_checkpoint": "1",
    }
    assert "output: results/checkpoints/step1100000-tokens4613B" in out  # the last checkpoint scores
    # without data.local_dir the DAG refuses to build, naming the key
    overlay.write_text("data:\n  source: local\n")
    proc = run_snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "olmoe.yaml"), str(overlay), check=False)
    assert proc.returncode != 0 and "data.local_dir is not set" in proc.stdout + proc.stderr
