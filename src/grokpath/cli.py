"""`grokpath` command line: parses arguments and calls one library function.

Every subcommand takes ``--cfg`` (the validated config sections, as JSON, handed
over by the Snakemake rule) and ``--log`` (a file under results/logs/).
Nothing imports this module.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from grokpath.config import InputError, from_json

log = logging.getLogger("grokpath")


def setup_logging(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--cfg", default="{}", help="validated config sections as JSON (set by the rule)")
    p.add_argument("--log", default=None, help="log file (results/logs/<rule>/<wildcards>.log)")
    return p


def _add(sub, name: str, help: str) -> argparse.ArgumentParser:
    return _common(sub.add_parser(name, help=help))


# ---------------------------------------------------------------- world + pretrain
def _register_world(sub) -> None:
    p = _add(sub, "world", "generate the mini world corpus and its tokenizer")
    p.add_argument("--out", required=True, type=Path, help="results/world")
    p.add_argument("--tokenizer-out", required=True, type=Path, help="results/tokenizer")
    p.set_defaults(func=_cmd_world)

    p = _add(sub, "pretrain", "pretrain the mini OLMoE and save checkpoints")
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--tokenizer", required=True, type=Path)
    p.add_argument("--checkpoints", required=True, type=Path, help="results/checkpoints")
    p.add_argument("--loss", required=True, type=Path, help="results/pretrain/loss.parquet")
    p.add_argument("--monitor", type=Path, default=None, help="results/pretrain/monitor.parquet")
    p.add_argument("--state", type=Path, default=None, help="resumable state (results/pretrain/state; default: beside --loss)")
    p.set_defaults(func=_cmd_pretrain)

    p = _add(sub, "monitor-figure", "fig 0: the online monitor's pathway metrics over pretraining")
    p.add_argument("--monitor", required=True, type=Path, help="results/pretrain/monitor.parquet")
    p.add_argument("--out", required=True, type=Path, help="figures/paper_a/fig00_monitor.png (PDF beside it)")
    p.set_defaults(func=_cmd_monitor_figure)


def _cmd_world(args, cfg) -> None:
    from grokpath.world import build_world

    build_world(cfg, out_dir=args.out, tokenizer_dir=args.tokenizer_out)


def _cmd_pretrain(args, cfg) -> None:
    from grokpath.pretrain import pretrain

    pretrain(
        cfg,
        world_dir=args.world,
        tokenizer_dir=args.tokenizer,
        checkpoints_dir=args.checkpoints,
        loss_path=args.loss,
        monitor_path=args.monitor,
        state_dir=args.state,
    )


def _cmd_monitor_figure(args, cfg) -> None:
    import pandas as pd

    from grokpath.figures.common import save_figure
    from grokpath.figures.monitor import monitor_figure

    save_figure(monitor_figure(pd.read_parquet(args.monitor)), args.out)


# ---------------------------------------------------------------- data stage (real studies)
def _register_data(sub) -> None:
    p = _add(sub, "select-data", "one domain's train, validation and unfiltered test files from its datasets")
    p.add_argument("--domain", required=True)
    p.add_argument("--out", required=True, type=Path, help="results/data/<domain>")
    p.add_argument("--manifest", required=True, type=Path, help="results/data/<domain>/manifest.parquet (manifest part)")
    p.set_defaults(func=_cmd_select_data)

    p = _add(sub, "select-tuning", "one LoRA tuning set as instruction/input/output JSONL")
    p.add_argument("--set", required=True, dest="set_name", help="name under data.tuning.sets")
    p.add_argument("--out", required=True, type=Path, help="results/data/tuning/<set>.jsonl")
    p.add_argument("--manifest", required=True, type=Path, help="results/data/tuning/<set>.manifest.parquet")
    p.set_defaults(func=_cmd_select_tuning)

    p = _add(sub, "data-manifest", "gather the manifest parts into results/data/manifest.parquet")
    p.add_argument("--inputs", required=True, nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_cmd_data_manifest)

    p = _add(sub, "contamination", "Min-K%%++ scores of the test sets; drop the top data.contamination.drop_fraction")
    p.add_argument("--checkpoint", required=True, type=Path, help="scoring checkpoint directory")
    p.add_argument("--ckpt", required=True, help="scoring checkpoint name")
    p.add_argument(
        "--test",
        action="append",
        default=[],
        type=_domain_path,
        metavar="DOMAIN=DIR",
        help="results/data/<domain>: reads test_unfiltered.jsonl, writes test.jsonl (repeat per domain)",
    )
    p.add_argument("--out", required=True, type=Path, help="results/data/contamination.parquet")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=_cmd_contamination)

    p = _add(sub, "standin-data", "write small local files in each paper-A dataset's columns (data.source: local)")
    p.add_argument("--out", required=True, type=Path, help="directory to use as data.local_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=40, help="rows per training-side and validation file")
    p.set_defaults(func=_cmd_standin_data)


def _cmd_select_data(args, cfg) -> None:
    from grokpath.selection import select_domain

    select_domain(cfg, args.domain, out_dir=args.out, manifest_out=args.manifest)


def _cmd_select_tuning(args, cfg) -> None:
    from grokpath.selection import select_tuning

    select_tuning(cfg, args.set_name, out=args.out, manifest_out=args.manifest)


def _cmd_data_manifest(args, cfg) -> None:
    from grokpath.selection import gather_manifest

    gather_manifest(args.inputs, out=args.out)


def _cmd_contamination(args, cfg) -> None:
    import torch

    from grokpath.contamination import run_contamination

    torch.set_num_threads(args.threads)
    tests = {domain: (folder / "test_unfiltered.jsonl", folder / "test.jsonl") for domain, folder in args.test}
    run_contamination(cfg, checkpoint_dir=args.checkpoint, ckpt=args.ckpt, tests=tests, scores_out=args.out)


def _cmd_standin_data(args, cfg) -> None:
    from grokpath.standin_data import write_standin_data

    for path in write_standin_data(args.out, seed=args.seed, n=args.n).values():
        log.info("wrote %s", path)


# ---------------------------------------------------------------- checkpoints + traces + evaluation
def _register_traces(sub) -> None:
    p = _add(sub, "fetch-checkpoint", "download one hub revision (checkpoints.source: hf) with provenance.json")
    p.add_argument("--ckpt", required=True, help="hub revision, e.g. step125000-tokens524B")
    p.add_argument("--out", required=True, type=Path, help="results/checkpoints/<ckpt>")
    p.add_argument("--threads", type=int, default=8, help="parallel file downloads")
    p.set_defaults(func=_cmd_fetch_checkpoint)

    p = _add(sub, "standin-hub", "a local stand-in of the hub (HF_ENDPOINT) for rehearsing the real study")
    actions = p.add_subparsers(dest="action", required=True)
    build = _common(actions.add_parser("build", help="write a tiny random OLMoE repo at several revisions"))
    build.add_argument("--root", required=True, type=Path, help="store directory")
    build.add_argument("--repo-id", default=None, help="repo id (default: the real study's)")
    build.add_argument("--revisions", nargs="+", default=None, help="branch names (default: 3 named like the real ones)")
    build.add_argument("--seed", type=int, default=0, help="init seed of the first revision (+1 per revision)")
    build.set_defaults(func=_cmd_standin_hub_build)
    serve = _common(actions.add_parser("serve", help="serve a store on 127.0.0.1 until killed"))
    serve.add_argument("--root", required=True, type=Path, help="store directory (standin-hub build)")
    serve.add_argument("--port", type=int, default=0, help="TCP port; 0: a free one")
    serve.add_argument("--port-file", type=Path, default=None, help="write the bound port here once listening")
    serve.add_argument("--tamper", nargs="*", default=[], help="serve these files with one byte flipped (hash-check rehearsal)")
    serve.add_argument(
        "--drop-after", type=int, default=None, help="cut the first GET of each LFS file after N bytes (resume rehearsal)"
    )
    serve.set_defaults(func=_cmd_standin_hub_serve)

    p = _add(sub, "traces", "per-sample loss and routing of every (domain, split) through one checkpoint")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory")
    p.add_argument("--ckpt", required=True, help="checkpoint name")
    p.add_argument("--out", required=True, type=Path, help="results/traces/<ckpt>")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=_cmd_traces)


def _cmd_fetch_checkpoint(args, cfg) -> None:
    from grokpath.checkpoints import fetch_hf_checkpoint

    fetch_hf_checkpoint(cfg["checkpoints"], args.ckpt, args.out, max_workers=args.threads)


def _cmd_standin_hub_build(args, cfg) -> None:
    from grokpath.standin_hub import STANDIN_REPO_ID, STANDIN_REVISIONS, build_standin_repo

    shas = build_standin_repo(
        args.root, repo_id=args.repo_id or STANDIN_REPO_ID, revisions=args.revisions or STANDIN_REVISIONS, seed=args.seed
    )
    for revision, sha in shas.items():
        print(f"{revision}\t{sha}")


def _cmd_standin_hub_serve(args, cfg) -> None:
    from grokpath.standin_hub import serve

    serve(args.root, port=args.port, port_file=args.port_file, tamper=args.tamper, drop_after=args.drop_after)


def _cmd_traces(args, cfg) -> None:
    import torch

    from grokpath.traces import run_traces

    torch.set_num_threads(args.threads)
    run_traces(cfg, checkpoint_dir=args.checkpoint, ckpt=args.ckpt, out_dir=args.out)


# ---------------------------------------------------------------- evaluation (lm-eval, optional LoRA)
def _domain_path(text: str) -> tuple[str, Path]:
    domain, sep, path = text.partition("=")
    if not sep or not domain or not path:
        raise argparse.ArgumentTypeError(f"expected DOMAIN=PATH, got '{text}'")
    return domain, Path(path)


def _register_evaluation(sub) -> None:
    p = _add(sub, "evaluate", "test accuracy of one checkpoint on every domain with one lm-eval call")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory")
    p.add_argument("--ckpt", required=True, help="checkpoint name")
    p.add_argument(
        "--test",
        action="append",
        default=[],
        type=_domain_path,
        metavar="DOMAIN=PATH",
        help="test JSONL of a domain with a local task (repeat per domain)",
    )
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        type=_domain_path,
        metavar="DOMAIN=PATH",
        help="LoRA adapter of a domain, results/tuned/<ckpt>/<set> (evaluation.tuning: lora; repeat per domain)",
    )
    p.add_argument("--tasks-dir", required=True, type=Path, help="shipped lm-eval task YAMLs (workflow/tasks)")
    p.add_argument("--out", required=True, type=Path, help="results/eval/<ckpt>")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=_cmd_evaluate)

    p = _add(sub, "tune", "LoRA instruction tuning of one checkpoint on one tuning set; saves the adapter")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory")
    p.add_argument("--set", required=True, dest="set_name", help="tuning set name (evaluation.lora.sets)")
    p.add_argument("--data", required=True, type=Path, help="the set's JSONL (instruction, input, output)")
    p.add_argument("--out", required=True, type=Path, help="results/tuned/<ckpt>/<set>")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=_cmd_tune)


def _cmd_evaluate(args, cfg) -> None:
    from grokpath.evaluation import run_evaluation

    run_evaluation(
        cfg,
        checkpoint_dir=args.checkpoint,
        ckpt=args.ckpt,
        out_dir=args.out,
        test_files=dict(args.test),
        adapters=dict(args.adapter),
        tasks_dir=args.tasks_dir,
        threads=args.threads,
    )


def _cmd_tune(args, cfg) -> None:
    from grokpath.tuning import tune_lora

    tune_lora(
        cfg, checkpoint_dir=args.checkpoint, set_name=args.set_name, data_file=args.data, out_dir=args.out, threads=args.threads
    )


# ---------------------------------------------------------------- paper A per-sample metrics
def _register_metrics(sub) -> None:
    p = _add(sub, "memorization", "memorization steps t* of one domain's training samples")
    p.add_argument("--domain", required=True)
    p.add_argument("--traces", required=True, nargs="+", type=Path, help="<ckpt>/<domain>_train.parquet, every checkpoint")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--ablation-out", required=True, type=Path)
    p.set_defaults(func=_cmd_memorization)

    p = _add(sub, "pathways", "pathway strings, routing entropy and pathway distances of one domain")
    p.add_argument("--domain", required=True)
    p.add_argument("--traces", required=True, nargs="+", type=Path, help="<ckpt>/<domain>_<split>.parquet")
    p.add_argument("--memorization", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="pathways.parquet")
    p.add_argument("--distances-out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=-1, help="rapidfuzz workers (-1: all cores)")
    p.set_defaults(func=_cmd_pathways)

    p = _add(sub, "cross-distances", "pathway distance between domains, per checkpoint")
    p.add_argument("--pathways", required=True, nargs="+", type=Path, help="per-domain pathways.parquet")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=-1, help="rapidfuzz workers (-1: all cores)")
    p.set_defaults(func=_cmd_cross_distances)

    p = _add(sub, "consistency", "pathway consistency C_i of one domain")
    p.add_argument("--domain", required=True)
    p.add_argument("--traces", required=True, nargs="+", type=Path)
    p.add_argument("--router-weights", required=True, nargs="+", type=Path, help="router_weights.npy beside the trace files")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_cmd_consistency)

    p = _add(sub, "onset", "generalization onset t# of one domain's test samples")
    p.add_argument("--domain", required=True)
    p.add_argument("--eval-samples", required=True, nargs="+", type=Path, help="eval/<ckpt>/samples.parquet, every checkpoint")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_cmd_onset)

    p = _add(sub, "groups", "pair memorization groups with onset groups (Hungarian matching)")
    p.add_argument("--domain", required=True)
    p.add_argument("--memorization", required=True, type=Path)
    p.add_argument("--onset", required=True, type=Path)
    p.add_argument("--train-texts", required=True, type=Path, help="training JSONL (sample_id, text)")
    p.add_argument("--test-texts", required=True, type=Path, help="test JSONL (sample_id, text)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=None, help="torch threads for the embedding model")
    p.set_defaults(func=_cmd_groups)

    p = _add(sub, "metrics-gather", "concatenate per-domain metric tables")
    p.add_argument("--inputs", required=True, nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_cmd_metrics_gather)


def _cmd_memorization(args, cfg) -> None:
    from grokpath.metrics import run_memorization

    run_memorization(cfg, args.domain, args.traces, out=args.out, ablation_out=args.ablation_out)


def _cmd_pathways(args, cfg) -> None:
    from grokpath.metrics import run_pathways

    run_pathways(
        cfg,
        args.domain,
        args.traces,
        args.memorization,
        pathways_out=args.out,
        distances_out=args.distances_out,
        threads=args.threads,
    )


def _cmd_cross_distances(args, cfg) -> None:
    from grokpath.metrics import run_cross_distances

    run_cross_distances(cfg, args.pathways, out=args.out, threads=args.threads)


def _cmd_consistency(args, cfg) -> None:
    from grokpath.metrics import run_consistency

    run_consistency(cfg, args.domain, args.traces, args.router_weights, out=args.out)


def _cmd_onset(args, cfg) -> None:
    from grokpath.metrics import run_onset

    run_onset(cfg, args.domain, args.eval_samples, out=args.out)


def _cmd_groups(args, cfg) -> None:
    from grokpath.metrics import run_groups

    run_groups(
        cfg, args.domain, args.memorization, args.onset, args.train_texts, args.test_texts, out=args.out, threads=args.threads
    )


def _cmd_metrics_gather(args, cfg) -> None:
    from grokpath.metrics import gather

    gather(args.inputs, out=args.out)


# ---------------------------------------------------------------- paper A metrics, tables, figures
# ---------------------------------------------------------------- paper A analysis: join, tables, figures, theory
def _register_analysis(sub) -> None:
    p = _add(sub, "samples", "the long per-(domain, checkpoint, sample) table every analysis step reads")
    p.add_argument("--traces", required=True, nargs="+", type=Path, help="traces/<ckpt>/<domain>_{train,validation}.parquet")
    p.add_argument("--eval-samples", required=True, nargs="+", type=Path, help="eval/<ckpt>/samples.parquet")
    for name in ("memorization", "onset", "consistency", "pathways"):
        p.add_argument(f"--{name}", required=True, type=Path, help=f"metrics/{name}.parquet")
    p.add_argument("--out", required=True, type=Path, help="metrics/samples.parquet")
    p.set_defaults(func=_cmd_samples)

    p = _add(sub, "curves", "join per-sample metrics into curves.parquet (one row per domain and checkpoint)")
    p.add_argument("--samples", required=True, type=Path, help="metrics/samples.parquet")
    p.add_argument("--distances", required=True, type=Path, help="metrics/distances.parquet")
    p.add_argument("--out", required=True, type=Path, help="metrics/curves.parquet")
    p.set_defaults(func=_cmd_curves)

    p = _add(sub, "correlations", "Table 1: correlations with accuracy over the sustained-rise window, bootstrap CIs")
    p.add_argument("--curves", required=True, type=Path, help="metrics/curves.parquet")
    p.add_argument("--samples", required=True, type=Path, help="metrics/samples.parquet")
    p.add_argument("--distances", required=True, type=Path, help="metrics/distances.parquet")
    p.add_argument("--out-csv", required=True, type=Path)
    p.add_argument("--out-md", required=True, type=Path)
    p.set_defaults(func=_cmd_correlations)

    p = _add(sub, "onset-table", "per domain: start of the sustained accuracy rise with a bootstrap CI")
    p.add_argument("--samples", required=True, type=Path, help="metrics/samples.parquet")
    p.add_argument("--out", required=True, type=Path, help="tables/onset.csv")
    p.set_defaults(func=_cmd_onset_table)

    p = _add(sub, "figures-a", "paper A's figures (PNG + PDF) from the metric tables")
    for name in ("curves", "samples", "distances", "cross-distances", "groups", "ablation"):
        p.add_argument(f"--{name}", required=True, type=Path)
    p.add_argument("--correlations", required=True, type=Path, help="tables/correlations.csv (sustained-rise windows)")
    p.add_argument("--out-dir", required=True, type=Path, help="figures/paper_a")
    p.set_defaults(func=_cmd_figures_a)

    p = _add(sub, "theory", "fig 8: synthetic MoE, effective dimension against pathway distance")
    p.add_argument("--out", required=True, type=Path, help="metrics/theory.parquet")
    p.add_argument("--figure", required=True, type=Path, help="figures/paper_a/fig08_theory.png (PDF beside it)")
    p.set_defaults(func=_cmd_theory)


def _cmd_samples(args, cfg) -> None:
    from grokpath.samples import write_samples

    write_samples(
        args.traces, args.eval_samples, args.memorization, args.onset, args.consistency, args.pathways, out_path=args.out
    )


def _cmd_curves(args, cfg) -> None:
    from grokpath.curves import write_curves

    write_curves(cfg, args.samples, args.distances, out_path=args.out)


def _cmd_correlations(args, cfg) -> None:
    from grokpath.correlations import write_correlations

    write_correlations(cfg, args.curves, args.samples, args.distances, out_csv=args.out_csv, out_md=args.out_md)


def _cmd_onset_table(args, cfg) -> None:
    from grokpath.rise import write_onset

    write_onset(cfg, args.samples, out_csv=args.out)


def _cmd_figures_a(args, cfg) -> None:
    from grokpath.figures.paper_a import write_paper_a_figures

    write_paper_a_figures(
        cfg,
        args.curves,
        args.samples,
        args.distances,
        args.cross_distances,
        args.groups,
        args.ablation,
        args.correlations,
        out_dir=args.out_dir,
    )


def _cmd_theory(args, cfg) -> None:
    from grokpath.theory import write_theory

    write_theory(cfg, table_path=args.out, figure_path=args.figure)


# ---------------------------------------------------------------- paper B circuits
def _register_circuits(sub) -> None:
    p = _add(sub, "circuits-train", "train all seeds of one circuits grid cell at once; write their curves")
    p.add_argument("--task", required=True, help="add | square | memorize | mix | mix_split")
    p.add_argument("--d-h", required=True, type=int, help="hidden size d_h")
    p.add_argument("--D", required=True, type=int, help="training pairs (mix: random-label subtraction pairs)")
    p.add_argument("--n-layers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (overrides circuits.train.threads)")
    p.add_argument("--out", required=True, type=Path, help="results/circuits/runs/<task>/dh<d>_D<n>.parquet")
    p.set_defaults(func=_cmd_circuits_train)

    p = _add(sub, "circuits-classify", "label every circuits run's regime; D_crit and D_mem estimates")
    p.add_argument("--runs", required=True, nargs="+", type=Path, help="run curve files")
    p.add_argument("--out", required=True, type=Path, help="results/circuits/regimes.parquet")
    p.set_defaults(func=_cmd_circuits_classify)

    p = _add(sub, "circuits-paper-a", "label paper A's domains with the circuits regime rule")
    p.add_argument("--curves", required=True, type=Path, help="results/metrics/curves.parquet")
    p.add_argument("--out", required=True, type=Path, help="results/circuits/paper_a_regimes.parquet")
    p.set_defaults(func=_cmd_circuits_paper_a)

    p = _add(sub, "circuits-figures", "paper B figures (PNG + PDF)")
    p.add_argument("--regimes", required=True, type=Path)
    p.add_argument("--runs", required=True, nargs="+", type=Path)
    p.add_argument("--out", required=True, nargs="+", type=Path, help="figure paths (.png); a .pdf is written beside each")
    p.set_defaults(func=_cmd_circuits_figures)


def _cmd_circuits_train(args, cfg) -> None:
    from grokpath.circuits.sweep import train_cell

    if args.threads:
        cfg["circuits"]["train"]["threads"] = args.threads
    train_cell(cfg["circuits"], args.task, args.d_h, args.D, args.out, n_layers=args.n_layers)


def _cmd_circuits_classify(args, cfg) -> None:
    from grokpath.circuits.sweep import classify_files

    classify_files(cfg["circuits"], args.runs, args.out)


def _cmd_circuits_paper_a(args, cfg) -> None:
    from grokpath.circuits.sweep import classify_paper_a_file

    classify_paper_a_file(cfg["circuits"], args.curves, args.out)


def _cmd_circuits_figures(args, cfg) -> None:
    from grokpath.circuits.sweep import write_figures

    write_figures(cfg["circuits"], args.regimes, args.runs, args.out, style=cfg.get("figures"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grokpath", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _register_world(sub)
    _register_data(sub)
    _register_traces(sub)
    _register_evaluation(sub)
    _register_metrics(sub)
    _register_analysis(sub)
    _register_circuits(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    try:
        cfg = from_json(args.cfg)
        args.func(args, cfg)
    except (InputError, FileNotFoundError) as err:
        # the user's input: one line that names the key, file or revision
        log.error("%s", err)
        return 2
    except Exception:
        # a bug: keep the traceback in the job's log
        log.exception("grokpath %s failed", args.command)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
