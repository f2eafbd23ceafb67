"""The judge: an LLM ranks all answers to a question, through any Backend (llama.cpp in this
process, a local llama.cpp server, or any OpenAI-compatible endpoint).

Model identities are hidden behind neutral labels. In the ``raq`` protocol the order of the
answers is shuffled per question with a recorded seed and the judge sees the question, a
context excerpt and every gold answer; the ``paper`` protocol keeps the reference study's
prompt and fixed order. A reply that is not a complete ranking is retried, and after the
last try the judgement is recorded as failed with every raw reply: never as a result.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

from . import prompts
from .backends.base import Backend, Request, Sampling
from .config import JudgeConfig
from .errors import BackendError, JudgeError
from .ranking import RankingParseError, parse_ranking, parse_ranking_with_ties, ranks_from_groups, ranks_from_order
from .records import Judgement, Question

#: Sampling besides the temperature: llama-cpp-python's server defaults for a chat request, sent
#: explicitly so that every backend (in-process, a local server, a remote one) samples alike.
JUDGE_TOP_P, JUDGE_TOP_K, JUDGE_MIN_P, JUDGE_REPEAT_PENALTY = 0.95, 40, 0.05, 1.1


class Judge:
    """Ranks the answers to a question through a Backend (the config says which)."""

    def __init__(self, config: JudgeConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.sampling = Sampling(temperature=config.temperature, top_p=JUDGE_TOP_P, top_k=JUDGE_TOP_K,
                                 min_p=JUDGE_MIN_P, repeat_penalty=JUDGE_REPEAT_PENALTY)

    # --- what is shown -------------------------------------------------------------------
    def orders_for(self, question_id: str, model_ids: Sequence[str]) -> list[list[str]]:
        """The orders in which one question's answers are shown.

        ``paper``: the configured order, always. ``raq``: a shuffle seeded by the judge's seed
        and the question id, then its rotations (so with ``orders`` equal to the number of
        models every answer is shown once in every position), then further seeded shuffles.
        """
        base = list(model_ids)
        if self.config.protocol == "paper":
            return [base] * self.config.orders
        rng = random.Random(f"{self.config.seed}:{question_id}")
        rng.shuffle(base)
        orders = [base[i:] + base[:i] for i in range(min(self.config.orders, len(base)))]
        while len(orders) < self.config.orders:
            extra = list(base)
            rng.shuffle(extra)
            orders.append(extra)
        return orders

    def order_for(self, question_id: str, model_ids: Sequence[str], order_index: int = 0) -> list[str]:
        return self.orders_for(question_id, model_ids)[order_index]

    def labels_for(self, count: int) -> list[str]:
        if self.config.protocol == "paper":
            return [str(i + 1) for i in range(count)]
        return prompts.answer_labels(count)

    def messages_for(self, question: Question, texts: Sequence[str], labels: Sequence[str]) -> list[dict[str, str]]:
        if self.config.protocol == "paper":
            gold = question.gold_answers[0] if question.gold_answers else ""
            return [{"role": "user", "content": prompts.paper_judge_prompt(gold, texts, labels)}]
        return prompts.judge_messages(question, texts, labels, self.config.context_chars)

    # --- asking --------------------------------------------------------------------------
    def request_for(self, messages: Sequence[dict[str, str]], labels: Sequence[str], attempt: int) -> Request:
        """The request for one attempt: the reference study's rank tool, or a ranking schema."""
        structure = ({"tool": prompts.PAPER_TOOL} if self.config.protocol == "paper"
                     else {"schema": prompts.ranking_schema(labels)})
        return Request.chat(messages, max_tokens=self.config.max_tokens, sampling=self.sampling,
                            seed=self.config.seed + attempt, **structure)

    def _ask(self, messages: list[dict[str, str]], labels: Sequence[str], attempt: int) -> str:
        try:
            return self.backend.complete(self.request_for(messages, labels, attempt)).text
        except BackendError as error:
            raise JudgeError(f"judge {self.config.id!r}: {error}") from None

    def judge(self, question: Question, answers: Mapping[str, str], model_ids: Sequence[str],
              order_index: int = 0) -> Judgement:
        """Rank the answers of ``model_ids`` to ``question`` shown in order ``order_index``;
        never raises for a bad reply (that gives a failed judgement)."""
        order = self.order_for(question.question_id, model_ids, order_index)
        labels = self.labels_for(len(order))
        messages = self.messages_for(question, [answers[m] for m in order], labels)
        replies: list[str] = []
        reason = ""
        start = time.monotonic()
        for attempt in range(self.config.max_retries + 1):
            reply = self._ask(messages, labels, attempt)
            replies.append(reply)
            try:
                by_label: Mapping[str, float]
                if self.config.allow_ties:
                    by_label = ranks_from_groups(parse_ranking_with_ties(reply, labels))
                else:
                    by_label = ranks_from_order(parse_ranking(reply, labels))
            except RankingParseError as error:
                reason = str(error)
                messages = [*messages, {"role": "assistant", "content": reply},
                            prompts.judge_retry_message(reason, labels)]
                continue
            ranks = {model: by_label[label] for model, label in zip(order, labels)}
            return Judgement(question_id=question.question_id, judge_id=self.config.id,
                             protocol=self.config.protocol, order=order, labels=labels, ranks=ranks,
                             ok=True, attempts=attempt + 1, raw_replies=replies,
                             seconds=time.monotonic() - start, order_index=order_index)
        return Judgement(question_id=question.question_id, judge_id=self.config.id,
                         protocol=self.config.protocol, order=order, labels=labels, ranks={}, ok=False,
                         attempts=len(replies), raw_replies=replies, error=reason,
                         seconds=time.monotonic() - start, order_index=order_index)

