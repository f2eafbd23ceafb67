"""From stored answers and judgements to one tidy table and a per-model summary.

A judge's verdict on a question is the mean of its ranks over the orders it saw (all of
them must have succeeded); with several judges, ``rank`` is the mean of their verdicts and
``rank.<judge>`` keeps each one. A question without a complete verdict is counted as not
judged, never dropped silently.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .abstention import is_abstention
from .metrics import exact_match, exact_match_v2, f1_v2
from .metrics import f1 as token_f1
from .records import Answer, Judgement, Question, to_dict

ANSWER_COLUMNS = ("text", "template", "prompt_tokens", "generated_tokens", "ttft_s", "prompt_s",
                  "generation_s", "total_s", "prompt_tok_s", "generation_tok_s", "words", "words_paper",
                  "words_per_s_paper", "finish_reason", "decoding", "node")


def verdicts(judgements: Sequence[Judgement], orders: Mapping[str, int]) -> dict[tuple[str, str], dict[str, float]]:
    """(question, judge) -> model -> mean rank over the judge's orders, for complete verdicts only."""
    ranks: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for judgement in judgements:
        if judgement.ok and judgement.judge_id in orders:
            ranks[(judgement.question_id, judgement.judge_id)].append(judgement.ranks)
    complete = {}
    for key, per_order in ranks.items():
        if len(per_order) == orders[key[1]]:
            models = per_order[0].keys()
            complete[key] = {m: sum(r[m] for r in per_order) / len(per_order) for m in models}
    return complete


def paragraph_id(context: str) -> str:
    """A short stable id of a question's context (questions about one paragraph share it)."""
    return hashlib.sha1(context.encode("utf-8")).hexdigest()[:12]


def answer_scores(answer: Answer, question: Question) -> dict[str, Any]:
    """Whether the question is answerable and the answer an abstention, and its EM and F1.

    On an answerable question the text is scored as given, by SQuAD 1.1's EM and F1 (SQuAD 2.0's
    too, unless a gold answer is empty once normalised; an abstention scores about 0 anyway), so
    answerable questions score as SQuAD 1.1 scores them, whatever the detector says. On an
    unanswerable one an abstention predicts "no answer" (SQuAD 2.0: EM = F1 = 1) and any other
    text scores 0. A skipped answer scores 0 and is no abstention. Abstentions are read from the
    text by this raq's :func:`~raq.abstention.is_abstention`, so that every run, whenever
    recorded, is analysed alike (the answer's own ``abstained`` is what its run saw)."""
    skipped = answer.finish_reason == "skipped"
    abstained = not skipped and is_abstention(answer.text)
    if skipped:
        em, f1 = 0.0, 0.0
    elif question.answerable:
        em, f1 = exact_match(answer.text, question.gold_answers), token_f1(answer.text, question.gold_answers)
    else:
        prediction = "" if abstained else answer.text
        em, f1 = exact_match_v2(prediction, question.gold_answers), f1_v2(prediction, question.gold_answers)
    return {"answerable": question.answerable, "abstained": bool(abstained), "em": em, "f1": f1}


def results_table(questions: Sequence[Question], answers: Sequence[Answer], judgements: Sequence[Judgement],
                  orders: Mapping[str, int]) -> pd.DataFrame:
    """One row per question x model, every metric a column. ``orders`` maps each judge id
    (the primary one first) to the number of orders it judges each question in."""
    by_question = {q.question_id: q for q in questions}
    judge_ids = list(orders)
    complete = verdicts(judgements, orders)
    first_order = {(j.question_id, j.judge_id): j.order for j in judgements if j.order_index == 0}
    rows = []
    for answer in answers:
        question = by_question.get(answer.question_id)
        if question is None:
            continue
        data = to_dict(answer)
        per_judge = {j: complete.get((answer.question_id, j), {}).get(answer.model_id) for j in judge_ids}
        judged = all(value is not None for value in per_judge.values())
        shown = first_order.get((answer.question_id, judge_ids[0]), [])
        row = {
            "question_id": answer.question_id, "model_id": answer.model_id,
            "paragraph": paragraph_id(question.context),
            **{column: data[column] for column in ANSWER_COLUMNS},
            **answer_scores(answer, question),
            "judged": judged,
            "rank": sum(v for v in per_judge.values() if v is not None) / len(per_judge) if judged else None,
            "shown_position": shown.index(answer.model_id) + 1 if answer.model_id in shown else None,
        }
        if len(judge_ids) > 1:
            row.update({f"rank.{j}": value for j, value in per_judge.items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        for column in [c for c in table.columns if c == "rank" or c.startswith("rank.")]:
            table[column] = pd.to_numeric(table[column])
        table = table.sort_values(["question_id", "model_id"], kind="stable").reset_index(drop=True)
    return table


def model_summary(table: pd.DataFrame, model_order: Sequence[str],
                  models_info: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per model: mean rank, EM/F1, answer length and speed (medians for timings), and memory
    (:func:`model_memory` of the manifest's ``models_info``)."""
    grouped = table.groupby("model_id")
    summary = pd.DataFrame({
        "answers": grouped.size(),
        "judged": grouped["judged"].sum(),
        "mean_rank": grouped["rank"].mean(),
        "em": grouped["em"].mean(),
        "f1": grouped["f1"].mean(),
        "mean_words": grouped["words"].mean(),
        "mean_words_paper": grouped["words_paper"].mean(),
        "median_ttft_s": grouped["ttft_s"].median(),
        "median_prompt_tok_s": grouped["prompt_tok_s"].median(),
        "median_generation_tok_s": grouped["generation_tok_s"].median(),
        "mean_words_per_s_paper": grouped["words_per_s_paper"].mean(),
        "decoding": grouped["decoding"].agg(lambda modes: ", ".join(sorted(set(modes)))),
    })
    order = [m for m in model_order if m in summary.index]
    return summary.loc[order].join(model_memory(models_info or {}, order))


def paragraph_statistics(judged: pd.DataFrame, alpha: float, seed: int) -> dict[str, Any] | None:
    """The rank tests again with each paragraph as one block (each model's ranks averaged over the
    paragraph's questions), when several questions share a paragraph: such questions are not
    independent blocks, paragraphs are. None when every question has its own paragraph."""
    from .stats import rank_statistics

    if "paragraph" not in judged or judged.empty:
        return None
    n_questions, n_paragraphs = judged["question_id"].nunique(), judged["paragraph"].nunique()
    if n_paragraphs == n_questions:
        return None
    per_paragraph = (judged.groupby(["paragraph", "model_id"], as_index=False)["rank"].mean()
                     .rename(columns={"paragraph": "question_id"}))
    result = rank_statistics(per_paragraph, value="rank", alpha=alpha, seed=seed)
    result.update(questions=int(n_questions), paragraphs=int(n_paragraphs),
                  note="questions about the same paragraph are not independent: each paragraph is one block "
                       "(mean rank over its questions); the per-question tests may overstate the evidence")
    return result


METRICS_TESTED = ("f1", "em", "words", "ttft_s", "generation_tok_s")
#: Timings: comparable between models only when every model was decoded the same way.
SPEED_METRICS = ("ttft_s", "generation_tok_s")


def speed_caveat(table: pd.DataFrame, nodes_info: Mapping[str, Any] | None = None) -> str | None:
    """Why the answers' timings do not compare between the models (None: they do): different
    decoding modes, several machines, or tasks side by side on one Ray node (``nodes_info``: the
    manifest's ``nodes``)."""
    modes = sorted(set(table["decoding"])) if "decoding" in table else ["single"]
    if len(modes) > 1:
        return f"the models were decoded in different modes ({', '.join(modes)}), so their timings are not comparable"
    nodes = set(table["node"]) if "node" in table else {""}  # "": the study's own process
    if len(nodes) > 1:
        return f"the answers were made on {len(nodes)} machines (Ray nodes), whose timings are not comparable"
    shared = sorted(n for n, facts in (nodes_info or {}).items() if (facts or {}).get("most_tasks_at_once", 1) > 1)
    if shared:
        return ("tasks ran side by side on a Ray node, sharing its cores and memory, so their timings are not "
                "comparable")
    return None


def statistics(table: pd.DataFrame, alpha: float, seed: int,
               nodes_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rank tests on the judged questions (failed or missing judgements are counted, not
    hidden), the same tests on per-answer metrics (speeds only where :func:`speed_caveat` finds
    none), and the study's power."""
    from .power import study_power
    from .stats import metric_statistics, rank_statistics

    judged = table[table["judged"]]
    questions = table["question_id"].nunique()
    result = rank_statistics(judged[["question_id", "model_id", "rank"]], value="rank", alpha=alpha, seed=seed)
    result["questions_total"] = int(questions)
    result["questions_not_judged"] = int(questions - judged["question_id"].nunique())
    result["by_paragraph"] = paragraph_statistics(judged, alpha=alpha, seed=seed)
    try:
        result["power"] = study_power(result, seed=seed)
    except ValueError as error:
        result["power"] = {"note": str(error)}
    result["metrics"] = {}
    caveat = speed_caveat(table, nodes_info)
    for metric in METRICS_TESTED:
        if metric in SPEED_METRICS and caveat:
            result["metrics"][metric] = {"note": f"not compared: {caveat}"}
            continue
        values = table[["question_id", "model_id", metric]].dropna()
        if not values.empty:
            result["metrics"][metric] = metric_statistics(values, metric, alpha=alpha, seed=seed)
    return result


MEMORY_COLUMNS = ("memory_mib", "peak_rss_mib", "file_mib", "weights_mib", "kv_cache_mib")


def model_memory(models_info: Mapping[str, Any], model_order: Sequence[str]) -> pd.DataFrame:
    """Per model (the manifest's ``models``): ``memory_mib``, the peak resident memory it added while
    it loaded and answered; ``peak_rss_mib``, the process's peak then; its GGUF's ``file_mib``, the
    ``weights_mib`` llama.cpp loaded and its ``kv_cache_mib`` for the run's context. Missing
    (served models, runs made before they were recorded) as NaN."""
    rows = {}
    for model in model_order:
        info = models_info.get(model) or {}
        memory = info.get("memory") or {}
        rows[model] = {"memory_mib": memory.get("added_rss_mib"), "peak_rss_mib": memory.get("peak_rss_mib"),
                       "file_mib": info.get("file_mib"), "weights_mib": info.get("weights_mib"),
                       "kv_cache_mib": info.get("kv_cache_mib")}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(MEMORY_COLUMNS)).astype(float)


def decision_statistics(judgements: Sequence[Judgement], table: pd.DataFrame, stats: dict[str, Any],
                        models: Sequence[str], alpha: float, seed: int,
                        memory: pd.DataFrame | None = None, nodes_info: Mapping[str, Any] | None = None
                        ) -> dict[str, Any]:
    """What a user deciding between the models needs beside the tests: the Plackett-Luce worths of
    every successful judgement, the judge's length preference, quality against speed and memory
    (``memory``: :func:`model_memory`'s table), and the recommendation."""
    from .decision import recommendation
    from .length_bias import length_effect
    from .plackett_luce import plackett_luce
    from .tradeoffs import MEMORY_AXIS, tradeoffs

    try:
        worths = plackett_luce(judgements, models, seed=seed)
    except ValueError as error:
        worths = {"note": str(error)}
    timed = table[table["total_s"].notna() & (table["total_s"] > 0)] if "total_s" in table else table.iloc[:0]
    if speed_caveat(table, nodes_info):
        timed = timed.iloc[:0]
    per_model: dict[str, dict[str, float]] = {
        str(model): {"answers_per_s": len(rows) / float(rows["total_s"].sum()),
                     "ttft_s": float(rows["ttft_s"].median())} for model, rows in timed.groupby("model_id")}
    if memory is not None:
        for model, value in memory["memory_mib"].dropna().items():
            per_model.setdefault(str(model), {})[MEMORY_AXIS] = float(value)
    result = {"plackett_luce": worths, "length": length_effect(table, seed=seed)}
    decided = {**stats, **result}
    return {**result, "tradeoffs": tradeoffs(decided, per_model),
            "recommendation": recommendation(decided, per_model, alpha=alpha)}
