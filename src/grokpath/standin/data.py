"""Small local stand-ins of paper A's datasets, each in its dataset's published columns.

Every row goes through :func:`grokpath.standin.fixtures.conform` with its dataset's fixture
(``tests/fixtures/hub/``): the generators below write the columns the study reads, the fixture
decides the rest, and a column a generator invents is an error.

:func:`write_standin_data` writes the layout ``data.source: local`` reads (``data.local_dir``):
``<domain>/<split>.jsonl|parquet``, ``math/test/<config>.jsonl`` (one file per MATH subject config) and
``tuning/<set>.jsonl``. Same seed, same bytes. The files hold what the selection has to cope with:
texts too long and too short for the length window, exact duplicates, mediawiki pages that are not
about organic chemistry and flan rows outside the commonsense cluster. The HumanEval+ stand-ins are
real small functions whose ``canonical_solution`` passes their ``test`` (``check(candidate)``).
"""

from __future__ import annotations

import functools
import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from grokpath.config import InputError
from grokpath.io import atomic_path
from grokpath.standin.fixtures import conform, fixture_name, load_fixture
from grokpath.standin.real_rows import CSQA_DIR, HUMANEVAL_FILE, MMLU_DIR, real_rows_ready

MATH_CONFIGS = [
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
]
WORDS = [
    "the",
    "of",
    "a",
    "model",
    "value",
    "number",
    "set",
    "point",
    "line",
    "sum",
    "field",
    "rule",
    "step",
    "result",
    "method",
    "case",
    "order",
    "form",
    "term",
    "group",
    "proof",
    "graph",
    "table",
    "word",
    "river",
    "house",
    "stone",
    "light",
    "water",
    "story",
    "city",
    "garden",
    "road",
    "music",
    "night",
]
CHEM = [
    "carbon",
    "alkane",
    "alkene",
    "benzene",
    "ester",
    "amine",
    "ketone",
    "aldehyde",
    "bond",
    "ring",
    "chain",
    "reaction",
    "solvent",
    "acid",
    "base",
]
BOOK_CHAPTERS = 10  # about 1,300 words per stand-in book
LONG_WORDS = 3000  # words in the "too long" texts: above any 2048-token window


def _sentence(rng: random.Random, vocab: list[str], n: int) -> str:
    return " ".join(rng.choice(vocab) for _ in range(n)).capitalize() + "."


def _paragraph(rng: random.Random, vocab: list[str], n_sentences: int) -> str:
    return " ".join(_sentence(rng, vocab, rng.randint(8, 14)) for _ in range(n_sentences))


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with atomic_path(path, ".jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _write_parquet(rows: list[dict], path: Path) -> None:
    with atomic_path(path, ".parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)


def _with_extremes(rng: random.Random, texts: list[str], vocab: list[str]) -> list[str]:
    """Append one text too long, one too short and exact duplicates of the first two."""
    return texts + [_paragraph(rng, vocab, LONG_WORDS // 10), "Too short.", texts[0], texts[1]]


# ---------------------------------------------------------------- training side
def _open_web_math(rng, n):
    texts = [
        f"Problem {i}. Let x = {rng.randint(2, 99)} and y = {rng.randint(2, 99)}. "
        + _paragraph(rng, WORDS, 4)
        + f" Hence x + y = {rng.randint(4, 198)} and the sum is even or odd."
        for i in range(n)
    ]
    return [
        {
            "url": f"https://math.example.org/post/{i}",
            "text": t,
            "date": f"2023-0{1 + i % 9}-1{i % 10}T00:00:00Z",
            "metadata": json.dumps({"extraction_info": {"found_math": True}, "score": 0.5 + (i % 5) / 10}),
        }
        for i, t in enumerate(_with_extremes(rng, texts, WORDS))
    ]


def _starcoder(rng, n):
    texts = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        texts.append(
            f'# {_sentence(rng, WORDS, 14)}\ndef func_{i}(x, y):\n    """{_sentence(rng, WORDS, 10)}"""\n    total = x * {a} + y * {b}\n'
            f"    for k in range({a + b}):\n        total += k\n    return total\n\n\nprint(func_{i}({a}, {b}))\n"
        )
    return [
        {
            "max_stars_repo_path": f"src/mod_{i}.py",
            "max_stars_repo_name": f"user{i % 7}/repo{i % 5}",
            "max_stars_count": (i * 37) % 500,
            "id": f"sc-{i:05d}",
            "content": t,
        }
        for i, t in enumerate(_with_extremes(rng, texts, WORDS))
    ]


def _dolma(rng, texts, source):
    return [
        {
            "id": f"{source}-{i:05d}",
            "text": t,
            "source": source,
            "added": "2024-04-01T00:00:00.000Z",
            "created": "2020-01-01T00:00:00.000Z",
            "metadata": {"length": len(t), "provenance": f"{source}-0000.json.gz:{i}"},
        }
        for i, t in enumerate(texts)
    ]


def _books(rng, n):
    """Book-length documents (a dolma books row is a whole book): 1,200+ words each, which the
    selection cuts into windows; one short "book", and exact duplicates, as elsewhere."""
    texts = [
        f"Book {i + 1}\n\n" + "\n\n".join(f"Chapter {c + 1}. " + _paragraph(rng, WORDS, 12) for c in range(BOOK_CHAPTERS))
        for i in range(n)
    ]
    return _dolma(rng, texts + ["Too short.", texts[0], texts[1]], "books")


def _mediawiki(rng, n):
    """Half the pages are about organic chemistry (the filter keeps them), half are not."""
    texts = []
    for i in range(n):
        if i % 2 == 0:
            texts.append(f"Compound {i}\n\nCompound {i} is studied in organic chemistry. " + _paragraph(rng, CHEM, 4))
        else:
            texts.append(f"Town {i}\n\nTown {i} lies on a river. " + _paragraph(rng, WORDS, 4))
    texts += ["Organic Chemistry\n\n" + _paragraph(rng, CHEM, LONG_WORDS // 10), "Organic chemistry.", texts[0], texts[2]]
    return _dolma(rng, texts, "wiki")


# ---------------------------------------------------------------- validation (loss only)
def _dart_math(rng, n):
    return [
        {
            "query": f"What is {a} + {b}?",
            "resp": f"We add {a} and {b}: " + _paragraph(rng, WORDS, 3) + f" The answer is $\\boxed{{{a + b}}}$.",
        }
        for a, b in ((rng.randint(10, 99), rng.randint(10, 99)) for _ in range(n))
    ]


def _leetcode(rng, n):
    rows = []
    for i in range(n):
        k = rng.randint(2, 9)
        rows.append(
            {
                "task_id": f"problem-{i}",
                "question_id": 1000 + i,
                "difficulty": ["Easy", "Medium", "Hard"][i % 3],
                "tags": ["Array", "Math"][: 1 + i % 2],
                "problem_description": f"Return the sum of nums times {k}. " + _paragraph(rng, WORDS, 2),
                "starter_code": "class Solution:\n    def solve(self, nums: List[int]) -> int:\n        ",
                "estimated_date": "2024-01-01",
                "prompt": "from typing import List\n",
                "completion": f"class Solution:\n    def solve(self, nums: List[int]) -> int:\n        return sum(nums) * {k}\n",
                "entry_point": "Solution().solve",
                "test": f"def check(candidate):\n    assert candidate([1, 2]) == {3 * k}\n",
                "input_output": [{"input": "nums = [1, 2]", "output": str(3 * k)}],
                "query": f"Return the sum of nums times {k}.",
                "response": f"return sum(nums) * {k}",
            }
        )
    return rows


FLAN_TASKS = ["copa:1.0.0", "hellaswag:1.1.0", "piqa:1.0.0", "story_cloze:2016", "glue/sst2:2.0.0", "trivia_qa/rc:1.1.0"]


def _flan(rng, n):
    """Two thirds commonsense-cluster rows; sst2 and trivia_qa rows are filtered out."""
    return [
        {
            "inputs": f"{_paragraph(rng, WORDS, 3)} What happens next?",
            "targets": _paragraph(rng, WORDS, 1),
            "task_source": "Flan2021",
            "task_name": FLAN_TASKS[i % len(FLAN_TASKS)],
            "template_type": ["zs_opt", "fs_noopt"][i % 2],
        }
        for i in range(n)
    ]


def _bookshelves(rng, n):
    return [
        {
            "title": f"{i}.{j}: {rng.choice(CHEM).capitalize()} reactions",
            "url": f"https://chem.libretexts.org/Bookshelves/{i}/{j}",
            "text": _paragraph(rng, CHEM, 4),
        }
        for i, j in ((k // 3 + 1, k % 3 + 1) for k in range(n))
    ]


# ---------------------------------------------------------------- test benchmarks
def _math_test(rng, config, n):
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        rows.append(
            {
                "problem": f"[{config}] Compute ${a} \\cdot {b} + {i}$.",
                "level": f"Level {1 + (i + len(config)) % 5}",
                "type": config.replace("_", " ").title(),
                "solution": f"We have ${a} \\cdot {b} = {a * b}$, so the answer is $\\boxed{{{a * b + i}}}$.",
            }
        )
    return rows


# Real small problems in HumanEval's shape: the canonical solution passes check(candidate).
HUMANEVAL = [
    (
        "add",
        'def add(x: int, y: int) -> int:\n    """Add two numbers x and y.\n    >>> add(2, 3)\n    5\n    """\n',
        "    return x + y\n",
        "    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n    assert candidate(10, 7) == 17\n",
    ),
    (
        "reverse_words",
        'def reverse_words(s: str) -> str:\n    """Reverse the order of the words in s.\n    >>> reverse_words(\'a b c\')\n    \'c b a\'\n    """\n',
        "    return ' '.join(s.split()[::-1])\n",
        "    assert candidate('a b c') == 'c b a'\n    assert candidate('hello') == 'hello'\n    assert candidate('') == ''\n",
    ),
    (
        "is_palindrome",
        'def is_palindrome(text: str) -> bool:\n    """Whether text reads the same backwards.\n    >>> is_palindrome(\'aba\')\n    True\n    """\n',
        "    return text == text[::-1]\n",
        "    assert candidate('aba') is True\n    assert candidate('ab') is False\n    assert candidate('') is True\n",
    ),
    (
        "count_vowels",
        'def count_vowels(s: str) -> int:\n    """Number of vowels (aeiou, any case) in s.\n    >>> count_vowels(\'Apple\')\n    2\n    """\n',
        "    return sum(1 for c in s.lower() if c in 'aeiou')\n",
        "    assert candidate('Apple') == 2\n    assert candidate('xyz') == 0\n    assert candidate('AEIOU') == 5\n",
    ),
    (
        "fib",
        'def fib(n: int) -> int:\n    """Return the n-th Fibonacci number (fib(0) = 0, fib(1) = 1).\n    >>> fib(10)\n    55\n    """\n',
        "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        "    assert candidate(0) == 0\n    assert candidate(1) == 1\n    assert candidate(10) == 55\n",
    ),
    (
        "max_element",
        'def max_element(values: list) -> int:\n    """Return the largest element of a non-empty list.\n    >>> max_element([1, 5, 3])\n    5\n    """\n',
        "    best = values[0]\n    for v in values[1:]:\n        if v > best:\n            best = v\n    return best\n",
        "    assert candidate([1, 5, 3]) == 5\n    assert candidate([-4, -2]) == -2\n    assert candidate([7]) == 7\n",
    ),
    (
        "unique_sorted",
        'def unique_sorted(values: list) -> list:\n    """Sorted unique elements of a list.\n    >>> unique_sorted([3, 1, 3, 2])\n    [1, 2, 3]\n    """\n',
        "    return sorted(set(values))\n",
        "    assert candidate([3, 1, 3, 2]) == [1, 2, 3]\n    assert candidate([]) == []\n",
    ),
    (
        "factorial",
        'def factorial(n: int) -> int:\n    """n! for n >= 0.\n    >>> factorial(5)\n    120\n    """\n',
        "    out = 1\n    for k in range(2, n + 1):\n        out *= k\n    return out\n",
        "    assert candidate(0) == 1\n    assert candidate(5) == 120\n    assert candidate(3) == 6\n",
    ),
    (
        "sum_digits",
        'def sum_digits(n: int) -> int:\n    """Sum of the decimal digits of a non-negative n.\n    >>> sum_digits(123)\n    6\n    """\n',
        "    return sum(int(d) for d in str(n))\n",
        "    assert candidate(123) == 6\n    assert candidate(0) == 0\n    assert candidate(909) == 18\n",
    ),
    (
        "below_threshold",
        'def below_threshold(values: list, t: int) -> bool:\n    """Whether every number in values is below t.\n    >>> below_threshold([1, 2], 3)\n    True\n    """\n',
        "    return all(v < t for v in values)\n",
        "    assert candidate([1, 2], 3) is True\n    assert candidate([1, 5], 3) is False\n    assert candidate([], 0) is True\n",
    ),
    (
        "even_only",
        'def even_only(values: list) -> list:\n    """The even numbers of values, in order.\n    >>> even_only([1, 2, 3, 4])\n    [2, 4]\n    """\n',
        "    return [v for v in values if v % 2 == 0]\n",
        "    assert candidate([1, 2, 3, 4]) == [2, 4]\n    assert candidate([1, 3]) == []\n",
    ),
    (
        "capitalize_words",
        'def capitalize_words(s: str) -> str:\n    """Capitalize the first letter of each space-separated word.\n    >>> capitalize_words(\'ab cd\')\n    \'Ab Cd\'\n    """\n',
        "    return ' '.join(w[:1].upper() + w[1:] for w in s.split(' '))\n",
        "    assert candidate('ab cd') == 'Ab Cd'\n    assert candidate('x') == 'X'\n",
    ),
]


def _humaneval():
    return [
        {
            "task_id": f"HumanEval/{i}",
            "prompt": prompt,
            "canonical_solution": solution,
            "entry_point": name,
            "test": "\n\nMETADATA = {'author': 'standin', 'dataset': 'test'}\n\n\ndef check(candidate):\n" + body,
        }
        for i, (name, prompt, solution, body) in enumerate(HUMANEVAL)
    ]


def _csqa(rng, n):
    rows = []
    for i in range(n):
        texts = [rng.choice(WORDS) + f" {i}-{j}" for j in range(5)]
        rows.append(
            {
                "id": f"{i:04x}standin{i:02d}",
                "question": f"Where would you keep a {rng.choice(WORDS)} number {i}?",
                "question_concept": rng.choice(WORDS),
                "choices": {"label": list("ABCDE"), "text": texts},
                "answerKey": "ABCDE"[i % 5],
            }
        )
    return rows


def _mmlu(rng, n):
    rows = []
    for i in range(n):
        choices = [f"{rng.choice(CHEM)} {i}-{j}" for j in range(4)]
        rows.append(
            {
                "question": f"Which of the following is a {rng.choice(CHEM)} in question {i}?",
                "subject": "college_chemistry",
                "choices": choices,
                "answer": i % 4,
            }
        )
    return rows


# ---------------------------------------------------------------- tuning sets
def _metamathqa(rng, n):
    return [
        {
            "query": f"What is {a} times {b}?",
            "response": f"{a} times {b} is {a * b}. The answer is: {a * b}",
            "type": ["GSM_Rephrased", "MATH_AnsAug"][i % 2],
            "original_question": f"Compute {a} * {b}.",
        }
        for i, (a, b) in enumerate((rng.randint(2, 20), rng.randint(2, 20)) for _ in range(n))
    ]


def _code_alpaca(n):
    """HuggingFaceH4/CodeAlpaca_20K rows: prompt and completion (no input column)."""
    return [
        {"prompt": f"Write a Python function that returns {i} plus its argument.", "completion": f"def f(x):\n    return x + {i}"}
        for i in range(n)
    ]


def _alpaca(rng, n):
    return [
        {
            "instruction": f"Give a synonym of '{rng.choice(WORDS)}'.",
            "input": "" if i % 3 else _sentence(rng, WORDS, 6),
            "output": rng.choice(WORDS),
        }
        for i in range(n)
    ]


@functools.cache
def _schema_data() -> dict:
    from grokpath.config import validate

    return validate({})["data"]


def _default_source(name: str) -> tuple[dict, str | None]:
    """The schema's default source a local file stands in for, and its config: ``<domain>/<split>.<ext>``,
    ``<domain>/<split>/<config>.<ext>`` or ``tuning/<set>.<ext>``."""
    data = _schema_data()
    parts = Path(name).with_suffix("").parts
    if parts[0] == "tuning":
        return data["tuning"]["sets"][parts[1]], None
    return data["domains"][parts[0]][parts[1]], parts[2] if len(parts) > 2 else None


def write_standin_data(out_dir: Path, seed: int = 0, n: int = 40, real_rows: Path | None = None) -> dict[str, Path]:
    """Write small local files in each paper-A dataset's columns under ``out_dir`` (use it as data.local_dir).

    ``n`` rows per training-side and validation file. With ``real_rows`` (a directory
    ``grokpath real-rows`` filled), the benchmarks that have a real copy are the real rows:
    ``commonsense/test/`` (CSQA validation) and ``domain/test/`` (MMLU college_chemistry test) as
    ``save_to_disk`` directories, ``code/test.jsonl`` (HumanEval). Returns {relative name: path}.
    """
    out_dir, rng, written = Path(out_dir), random.Random(seed), {}
    if real_rows is not None and not real_rows_ready(real_rows):
        raise InputError(f"real_rows '{real_rows}' is not a complete real-rows directory (run scripts/fetch_real_rows.sh)")

    def put(name: str, rows: list[dict]) -> None:
        path = out_dir / name
        spec, config = _default_source(name)
        rows = conform(rows, load_fixture(fixture_name(spec)), config)  # the dataset's published columns
        (_write_parquet if name.endswith(".parquet") else _write_jsonl)(rows, path)
        written[name] = path

    def copy(name: str, source: Path) -> None:
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            shutil.copytree(source, path)
        else:
            shutil.copyfile(source, path)
        written[name] = path

    put("math/train.jsonl", _open_web_math(rng, n))
    put("math/validation.jsonl", _dart_math(rng, n))
    for config in MATH_CONFIGS:
        put(f"math/test/{config}.jsonl", _math_test(rng, config, 3))
    put("code/train.jsonl", _starcoder(rng, n))
    put("code/validation.jsonl", _leetcode(rng, n))
    if real_rows is None:
        put("code/test.jsonl", _humaneval())
    else:
        copy("code/test.jsonl", Path(real_rows) / HUMANEVAL_FILE)
    put("commonsense/train.jsonl", _books(rng, n))
    put("commonsense/validation.jsonl", _flan(rng, n + n // 2))
    if real_rows is None:
        put("commonsense/test.parquet", _csqa(rng, 20))
    else:
        copy("commonsense/test", Path(real_rows) / CSQA_DIR)
    put("domain/train.jsonl", _mediawiki(rng, 2 * n))
    put("domain/validation.jsonl", _bookshelves(rng, n))
    if real_rows is None:
        put("domain/test.parquet", _mmlu(rng, 20))
    else:
        copy("domain/test", Path(real_rows) / MMLU_DIR / "test")
    put("tuning/metamathqa.jsonl", _metamathqa(rng, n))
    put("tuning/codealpaca.jsonl", _code_alpaca(n))
    put("tuning/alpaca-cleaned.jsonl", _alpaca(rng, n))
    return written
