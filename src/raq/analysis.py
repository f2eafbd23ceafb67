"""From stored answers and judgements to one tidy table, a per-model summary and the statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from .metrics import exact_match, f1
from .records import Answer, Judgement, Question, to_dict

ANSWER_COLUMNS = ("text", "template", "prompt_tokens", "generated_tokens", "ttft_s", "prompt_s",
                  "generation_s", "total_s", "prompt_tok_s", "generation_tok_s", "words", "words_paper",
                  "words_per_s_paper", "finish_reason")


def results_table(questions: Sequence[Question], answers: Sequence[Answer],
                  judgements: Sequence[Judgement], judge_id: str) -> pd.DataFrame:
    """One row per question x model, every metric a column; ``rank`` is empty where the
    judgement failed or is missing (``judged`` says which)."""
    by_question = {q.question_id: q for q in questions}
    verdicts = {j.question_id: j for j in judgements if j.judge_id == judge_id}
    rows = []
    for answer in answers:
        question = by_question.get(answer.question_id)
        if question is None:
            continue
        data = to_dict(answer)
        verdict = verdicts.get(answer.question_id)
        rows.append({
            "question_id": answer.question_id, "model_id": answer.model_id,
            **{column: data[column] for column in ANSWER_COLUMNS},
            "em": exact_match(answer.text, question.gold_answers),
            "f1": f1(answer.text, question.gold_answers),
            "judge_id": judge_id,
            "judged": bool(verdict and verdict.ok),
            "rank": verdict.ranks.get(answer.model_id) if verdict and verdict.ok else None,
            "shown_position": (verdict.order.index(answer.model_id) + 1
                               if verdict and answer.model_id in verdict.order else None),
        })
    table = pd.DataFrame(rows)
    if not table.empty:
        table["rank"] = pd.to_numeric(table["rank"])
        table = table.sort_values(["question_id", "model_id"], kind="stable").reset_index(drop=True)
    return table


def model_summary(table: pd.DataFrame, model_order: Sequence[str]) -> pd.DataFrame:
    """Per model: mean rank, EM/F1, answer length and speed (medians for timings)."""
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
    })
    order = [m for m in model_order if m in summary.index]
    return summary.loc[order]


def statistics(table: pd.DataFrame, alpha: float, seed: int) -> dict[str, Any]:
    """Rank tests on the judged questions; failed or missing judgements are counted, not hidden."""
    from .stats import rank_statistics

    judged = table[table["judged"]]
    questions = table["question_id"].nunique()
    judged_questions = judged["question_id"].nunique()
    result = rank_statistics(judged[["question_id", "model_id", "rank"]], value="rank", alpha=alpha, seed=seed)
    result["questions_total"] = int(questions)
    result["questions_not_judged"] = int(questions - judged_questions)
    return result
