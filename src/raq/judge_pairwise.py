"""The pairwise protocol: the judge compares every pair of answers, in both orders, against the
question and the references (and the context excerpt with ``show_context``), and the
comparisons are combined into a ranking by Copeland's rule.

Where the backend gives log-probabilities, a pair is won by the answer the judge prefers with a
mean probability over the two orders above one half (so that a preference for a position
cancels out); else by the answer both orders chose, and a pair whose two orders disagree (the
judge followed the position, not the answers) is a tie. An answer's score is its wins plus half
its ties; ranks come from the scores, equal scores sharing the mean rank. Each comparison's reply,
its choice and, where the backend gives log-probabilities, the two letters' probabilities are
kept in the judgement's ``details``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import prompts
from .judge import ScoringJudge, counted
from .records import Judgement, Question

LABELS = ("A", "B")


def copeland_scores(model_ids: Sequence[str], winners: Mapping[tuple[str, str], str],
                    first_preferred: Mapping[tuple[str, str], float] | None = None) -> dict[str, float]:
    """Wins plus half the ties of each model. ``winners`` maps each shown pair (first, second) to
    the model chosen; ``first_preferred``, when given for every shown pair, the probability that
    the first was preferred, and decides instead (mean over both orders; one half is a tie). A
    pair missing an order counts for neither model."""
    scores = dict.fromkeys(model_ids, 0.0)
    for a, b in itertools.combinations(model_ids, 2):
        if (a, b) not in winners or (b, a) not in winners:
            continue
        if first_preferred:
            p = (first_preferred[(a, b)] + 1.0 - first_preferred[(b, a)]) / 2
            winner = a if p > 0.5 else b if p < 0.5 else None
        else:
            winner = winners[(a, b)] if winners[(a, b)] == winners[(b, a)] else None
        if winner is None:
            scores[a] += 0.5
            scores[b] += 0.5
        else:
            scores[winner] += 1.0
    return scores


class PairwiseJudge(ScoringJudge):
    """Compares every ordered pair of a question's answers (see the module docstring)."""

    protocol = "pairwise"
    labels = LABELS

    def messages(self, question: Question, answers: Mapping[str, str], first: str, second: str) -> list[dict[str, str]]:
        """The prompt that shows ``first``'s answer as A and ``second``'s as B."""
        return prompts.pairwise_messages(question, answers[first], answers[second], LABELS,
                                         context_chars=self.config.context_chars,
                                         show_context=self.config.context_shown)

    def judge(self, question: Question, answers: Mapping[str, str], model_ids: Sequence[str],
              order_index: int = 0) -> Judgement:
        """Compare all pairs, asked together and grouped by the answer shown first (so consecutive
        prompts share the longest prefix); a failed comparison fails the judgement."""
        start = time.monotonic()
        pairs = list(itertools.permutations(model_ids, 2))
        asked = self.asker.ask_many([self.messages(question, answers, a, b) for a, b in pairs], LABELS,
                                    lambda reason: prompts.choice_retry_message(reason, LABELS))
        details: list[dict[str, Any]] = []
        replies: list[str] = []
        winners: dict[tuple[str, str], str] = {}
        error = ""
        for (first, second), compared in zip(pairs, asked):
            winner = None if compared["choice"] is None else (first, second)[LABELS.index(compared["choice"])]
            replies.extend(compared["replies"])
            details.append({"shown": [first, second], "reply": compared["reply"], "winner": winner,
                            "probs": compared["probs"], "mass": compared["mass"], "logprobs": compared["logprobs"],
                            **counted(compared)})
            if winner is None:
                error = error or f"no choice between {first} and {second}: {compared['error']}"
            else:
                winners[(first, second)] = winner
        probs = {tuple(d["shown"]): d["probs"]["A"] for d in details if d["probs"]}
        scores = copeland_scores(model_ids, winners, probs if len(probs) == len(details) else None) if not error else {}
        return self.judgement(question, model_ids, order_index, scores, details, replies, error, start)
