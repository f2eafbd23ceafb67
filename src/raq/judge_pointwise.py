"""The pointwise protocol: the judge grades each answer on its own against the question and the
references (and the context excerpt with ``show_context``): ``grades: yes-no`` asks whether it
gives the same answer as a reference, ``grades: 0-2`` grades it incorrect (0), partly correct (1)
or correct (2).

Where the backend gives token log-probabilities, an answer's score is the probability-weighted
grade value (P(yes) for yes-no; near-ties stay visible); else the sampled grade's value. Ranks
come from the scores, ties allowed. No order of answers is shown, so there is no position bias
to average out. Every prompt of a question is the same up to the answer, so a backend that keeps
its prompt prefix (the in-process judge, llama.cpp's server) reads the shared part once per
question and each answer only as a short suffix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import prompts
from .judge import ScoringJudge, counted
from .records import Judgement, Question

#: Words a judge may write instead of a grade.
GRADE_WORDS = {
    "yes-no": {"yes": "yes", "no": "no", "correct": "yes", "incorrect": "no"},
    "0-2": {"correct": "2", "partly correct": "1", "partially correct": "1", "incorrect": "0", "wrong": "0"},
}


class PointwiseJudge(ScoringJudge):
    """Grades every answer to a question, one request per answer (see the module docstring)."""

    protocol = "pointwise"

    def messages(self, question: Question, answer: str) -> list[dict[str, str]]:
        """The prompt that asks for one answer's grade."""
        config = self.config
        return prompts.pointwise_messages(question, answer, grades=config.grades,
                                          context_chars=config.context_chars, show_context=config.context_shown)

    def scored(self, asked: dict[str, Any]) -> dict[str, Any]:
        """One answer's grade from the asker's record: ``grade`` (the option, or None) and ``score``."""
        probs, grade = asked["probs"], asked["choice"]
        score = (sum(prompts.GRADE_VALUES[g] * p for g, p in probs.items()) if probs
                 else None if grade is None else prompts.GRADE_VALUES[grade])
        return {**asked, "grade": grade, "score": score, "grade_probs": probs}

    def judge(self, question: Question, answers: Mapping[str, str], model_ids: Sequence[str],
              order_index: int = 0) -> Judgement:
        """Grade the answers of ``model_ids``, asked together (an in-process judge decodes them in
        one batch); a failed grade fails the judgement (never a guess)."""
        start = time.monotonic()
        options = prompts.GRADES[self.config.grades]
        asked = self.asker.ask_many([self.messages(question, answers[m]) for m in model_ids], options,
                                    lambda reason: prompts.choice_retry_message(reason, options),
                                    GRADE_WORDS[self.config.grades])
        details: list[dict[str, Any]] = []
        replies: list[str] = []
        scores: dict[str, float] = {}
        error = ""
        for model, one in zip(model_ids, asked):
            graded = self.scored(one)
            replies.extend(graded.pop("replies"))
            details.append({"model": model, "reply": graded["reply"], "grade": graded["grade"],
                            "score": graded["score"], "grade_probs": graded["grade_probs"],
                            "grade_mass": graded["mass"], "grade_logprobs": graded["logprobs"], **counted(graded)})
            if graded["grade"] is None:
                error = error or f"no grade for the answer of {model}: {graded['error']}"
            else:
                scores[model] = float(graded["score"])
        return self.judgement(question, model_ids, order_index, scores, details, replies, error, start)
