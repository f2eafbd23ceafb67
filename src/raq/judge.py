"""The judge: an LLM behind any OpenAI-compatible endpoint ranks all answers to a question.

Model identities are hidden behind neutral labels. In the ``raq`` protocol the order of the
answers is shuffled per question with a recorded seed and the judge sees the question, a
context excerpt and every gold answer; the ``paper`` protocol keeps the reference study's
prompt and fixed order. A reply that is not a complete ranking is retried, and after the
last try the judgement is recorded as failed with every raw reply: never as a result.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import prompts
from .config import JudgeConfig
from .errors import JudgeError, redact
from .ranking import (RankingParseError, parse_ranking, parse_ranking_with_ties, ranks_from_groups,
                      ranks_from_order)
from .records import Judgement, Question


def api_key_from_env(variable: str | None, owner: str) -> str:
    """The API key held by environment variable ``variable`` (never by a file); a placeholder
    when none is named (local servers need none)."""
    if not variable:
        return "not-needed"
    key = os.environ.get(variable)
    if not key:
        raise JudgeError(f"{owner}: environment variable {variable} is not set")
    return key


class Judge:
    """Ranks answers through the chat-completions API of ``base_url``."""

    def __init__(self, config: JudgeConfig, *, base_url: str, model: str, api_key: str,
                 response_format: str = "json_schema") -> None:
        from openai import OpenAI

        self.config = config
        self.model = model
        self.server_pid: int | None = None  # set when raq runs the judge's server itself
        self._secret = api_key
        self.response_format = response_format  # "json_schema", "json_object" (llama.cpp) or "text"
        self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=config.timeout_s, max_retries=4)

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
    def _request(self, messages: list[dict[str, str]], labels: Sequence[str], attempt: int) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model, "messages": messages, "temperature": self.config.temperature,
            "seed": self.config.seed + attempt, "max_tokens": self.config.max_tokens,
        }
        if self.config.protocol == "paper":
            request["tools"] = [prompts.PAPER_TOOL]
            request["tool_choice"] = {"type": "function", "function": {"name": "return_rank"}}
        elif self.response_format == "json_object":
            request["response_format"] = {"type": "json_object", "schema": prompts.ranking_schema(labels)}
        elif self.response_format == "json_schema":
            request["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "ranking", "schema": prompts.ranking_schema(labels)}}
        return request

    def _ask(self, messages: list[dict[str, str]], labels: Sequence[str], attempt: int) -> str:
        import openai

        request = self._request(messages, labels, attempt)
        try:
            response = self.client.chat.completions.create(**request)
        except openai.BadRequestError as error:
            if "response_format" in request and self.response_format != "text":
                self.response_format = "text"  # the endpoint does not take structured output
                return self._ask(messages, labels, attempt)
            raise JudgeError(f"judge {self.config.id!r} rejected the request: "
                             f"{_short(error, self._secret)}") from None
        except openai.APIError as error:
            raise JudgeError(f"judge {self.config.id!r} at {self.client.base_url} failed: "
                             f"{_short(error, self._secret)}") from None
        message = response.choices[0].message
        if message.tool_calls:
            return message.tool_calls[0].function.arguments or ""
        return message.content or ""

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


def _short(error: Exception, secret: str = "") -> str:
    """One line from an API error, at most 300 characters, with the API key masked."""
    return redact(json.dumps(getattr(error, "message", None) or str(error))[1:-1][:300], secret)
