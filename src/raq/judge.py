"""The judge: an LLM ranks all answers to a question, through any Backend (llama.cpp in this
process, a local llama.cpp server, or any OpenAI-compatible endpoint).

Model identities are hidden behind neutral labels. In the ``raq`` protocol the order of the
answers is shuffled per question with a recorded seed and the judge sees the question, a
context excerpt and every gold answer; the ``paper`` protocol keeps the reference study's
prompt and fixed order. A reply that is not a complete ranking is retried, and after the
last try the judgement is recorded as failed with every raw reply: never as a result.
"""

from __future__ import annotations

import html
import math
import random
import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from . import prompts
from .backends.base import Backend, Completion, Request, Sampling, prompt_tokens_read
from .config import JudgeConfig
from .errors import BackendError, JudgeError
from .ranking import RankingParseError, parse_ranking, parse_ranking_with_ties, ranks_from_groups, ranks_from_order
from .records import Judgement, Question

#: Sampling besides the temperature: llama-cpp-python's server defaults for a chat request, sent
#: explicitly so that every backend (in-process, a local server, a remote one) samples alike.
JUDGE_TOP_P, JUDGE_TOP_K, JUDGE_MIN_P, JUDGE_REPEAT_PENALTY = 0.95, 40, 0.05, 1.1
#: Alternatives per token asked for where a scoring protocol reads the options' probabilities.
LOGPROBS = 20


def judge_sampling(config: JudgeConfig) -> Sampling:
    return Sampling(temperature=config.temperature, top_p=JUDGE_TOP_P, top_k=JUDGE_TOP_K,
                    min_p=JUDGE_MIN_P, repeat_penalty=JUDGE_REPEAT_PENALTY)


class PromptTally:
    """The prompt tokens of a judgement's requests, and how many of them the judge read (a
    figure becomes None once one request's backend does not say it); the endpoint of each."""

    def __init__(self) -> None:
        self.tokens: int | None = 0
        self.read: int | None = 0
        self.endpoints: list[str] = []

    def add(self, completion: Completion) -> None:
        self.add_counts(completion.prompt_tokens, prompt_tokens_read(completion))
        if completion.endpoint:
            self.endpoints.append(completion.endpoint)

    def add_counts(self, tokens: int | None, read: int | None) -> None:
        self.tokens = None if self.tokens is None or tokens is None else self.tokens + tokens
        self.read = None if self.read is None or read is None else self.read + read


class Judge:
    """Ranks the answers to a question through a Backend (the config says which)."""

    def __init__(self, config: JudgeConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.sampling = judge_sampling(config)

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
            gold = prompts.paper_gold(question)  # a fixed text for a question without gold answers
            return [{"role": "user", "content": prompts.paper_judge_prompt(gold, texts, labels)}]
        return prompts.judge_messages(question, texts, labels, self.config.context_chars)

    # --- asking --------------------------------------------------------------------------
    def request_for(self, messages: Sequence[dict[str, str]], labels: Sequence[str], attempt: int) -> Request:
        """The request for one attempt: the reference study's rank tool, or a ranking schema."""
        structure = ({"tool": prompts.PAPER_TOOL} if self.config.protocol == "paper"
                     else {"schema": prompts.ranking_schema(labels)})
        return Request.chat(messages, max_tokens=self.config.max_tokens, sampling=self.sampling,
                            seed=self.config.seed + attempt, **structure)

    def _ask(self, messages: list[dict[str, str]], labels: Sequence[str], attempt: int, tally: PromptTally) -> str:
        try:
            completion = self.backend.complete(self.request_for(messages, labels, attempt))
        except BackendError as error:
            raise JudgeError(f"judge {self.config.id!r}: {error}") from None
        tally.add(completion)
        return completion.text

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
        tally = PromptTally()
        for attempt in range(self.config.max_retries + 1):
            reply = self._ask(messages, labels, attempt, tally)
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
                             seconds=time.monotonic() - start, order_index=order_index,
                             prompt_tokens=tally.tokens, prompt_tokens_read=tally.read, endpoints=tally.endpoints)
        return Judgement(question_id=question.question_id, judge_id=self.config.id,
                         protocol=self.config.protocol, order=order, labels=labels, ranks={}, ok=False,
                         attempts=len(replies), raw_replies=replies, error=reason,
                         seconds=time.monotonic() - start, order_index=order_index,
                         prompt_tokens=tally.tokens, prompt_tokens_read=tally.read, endpoints=tally.endpoints)



# --- what the scoring protocols share ----------------------------------------------------------

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def read_choice(reply: str, options: Sequence[str], words: Mapping[str, str] | None = None) -> str:
    """The one option a reply names: the reply itself, or the only option standing alone in it
    (Unicode-normalised; ``words`` maps phrases such as "partly correct" to options, used
    when no option stands alone). None named, or several, raises RankingParseError."""
    text = unicodedata.normalize("NFKC", html.unescape(reply)).translate(_INVISIBLE)
    text = re.sub(r"<think>.*?</think>", " ", text, flags=re.S | re.I).strip(" \t\n*_`'\".:")
    if text in options:
        return text
    found = {option for option in options  # a word option in any case: "Yes" is "yes"; "a" is no "A"
             if re.search(rf"(?<![\w.]){re.escape(option)}(?![\w]|\.\d)", text, re.I if len(option) > 1 else 0)}
    if not found and words:
        rest = text.lower()
        for phrase in sorted(words, key=len, reverse=True):  # "partly correct" before "correct"
            if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", rest):
                found.add(words[phrase])
                rest = re.sub(rf"(?<!\w){re.escape(phrase)}(?!\w)", " ", rest)
    if len(found) == 1:
        return found.pop()
    if found:
        raise RankingParseError(f"the reply names several of {', '.join(options)}: {', '.join(sorted(found))}")
    raise RankingParseError(f"the reply names none of {', '.join(options)}")


def option_logprobs(completion: Completion, options: Sequence[str]) -> dict[str, float | None] | None:
    """The log-probability of each of ``options`` at the reply's first token (a word option in any
    case; tokens of the same option summed; None when not among the alternatives returned), or
    None without log-probabilities there."""
    if not completion.top_logprobs:
        return None
    mass = dict.fromkeys(options, 0.0)
    words = {option.lower(): option for option in options if len(option) > 1}  # "Yes" is "yes"; "a" is no "A"
    for token, logprob in completion.top_logprobs[0].items():
        option = token.strip() if token.strip() in mass else words.get(token.strip().lower())
        if option is not None:
            mass[option] += math.exp(logprob)
    return {option: math.log(p) if p > 0.0 else None for option, p in mass.items()}


def option_probs(logprobs: Mapping[str, float | None] | None) -> tuple[dict[str, float], float] | None:
    """The options' probabilities normalised over them, and the share of the model's probability
    they hold (from :func:`option_logprobs`), or None when none of them was returned."""
    mass = {option: math.exp(lp) if lp is not None else 0.0 for option, lp in (logprobs or {}).items()}
    total = sum(mass.values())
    if total <= 0.0:
        return None
    return {option: p / total for option, p in mass.items()}, total


def ranks_from_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """1 for the highest score; equal scores share the mean of their ranks."""
    values = list(scores.values())
    return {model: 1 + sum(v > score for v in values) + (sum(v == score for v in values) - 1) / 2
            for model, score in scores.items()}


def counted(asked: Mapping[str, Any]) -> dict[str, Any]:
    """What a scoring judge's detail entry keeps of what an ask cost: attempts, prompt tokens, endpoints."""
    return {key: asked[key] for key in ("attempts", "prompt_tokens", "prompt_tokens_read", "endpoints")}


class ChoiceAsker:
    """Asks a judge for one of a few options (a grade, a letter), retrying a reply that names
    none or several; keeps every reply and reads the options' probabilities when it can."""

    def __init__(self, config: JudgeConfig, backend: Backend, sampling: Sampling) -> None:
        self.config, self.backend, self.sampling = config, backend, sampling

    def ask(self, messages: list[dict[str, str]], options: Sequence[str], retry: Any,
            words: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``{"reply", "replies", "choice" (None after the last failed try), "probs", "mass", "logprobs",
        "attempts", "error", "prompt_tokens", "prompt_tokens_read", "endpoints"}`` (the tokens over all tries,
        the endpoint of each try); ``retry(reason)`` is the follow-up message after a bad reply."""
        return self.ask_many([messages], options, retry, words)[0]

    def ask_many(self, conversations: Sequence[list[dict[str, str]]], options: Sequence[str], retry: Any,
                 words: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """:meth:`ask` for several prompts at once, in order: every attempt of all prompts still
        without a choice goes to the backend's ``complete_many`` together (an in-process judge
        decodes them in one batch, their shared prefix read once)."""
        asks = [_Ask(list(messages)) for messages in conversations]
        for attempt in range(self.config.max_retries + 1):
            open_asks = [a for a in asks if a.result is None]
            if not open_asks:
                break
            requests = [Request.chat(a.messages, max_tokens=self.config.max_tokens, sampling=self.sampling,
                                     seed=self.config.seed + attempt, choices=tuple(options), logprobs=LOGPROBS)
                        for a in open_asks]
            try:
                completions = dict(self.backend.complete_many(requests))
            except BackendError as error:
                raise JudgeError(f"judge {self.config.id!r}: {error}") from None
            for index, a in enumerate(open_asks):
                a.take(completions[index], attempt, options, words, retry)
        return [a.result if a.result is not None else a.failed() for a in asks]


class _Ask:
    """One prompt's tries in :meth:`ChoiceAsker.ask_many`."""

    def __init__(self, messages: list[dict[str, str]]) -> None:
        self.messages = messages
        self.replies: list[str] = []
        self.reason = ""
        self.tally = PromptTally()
        self.result: dict[str, Any] | None = None

    def take(self, completion: Completion, attempt: int, options: Sequence[str], words: Mapping[str, str] | None,
             retry: Any) -> None:
        """Read one reply: the result, or the follow-up for the next try."""
        self.tally.add(completion)
        self.replies.append(completion.text)
        try:
            choice = read_choice(completion.text, options, words)
        except RankingParseError as error:
            self.reason = error.reason
            self.messages = [*self.messages, {"role": "assistant", "content": completion.text}, retry(self.reason)]
            return
        bare = completion.text.strip(" \t\n*_`'\".:").lower() == choice.lower()  # the reply is the choice alone
        logprobs = option_logprobs(completion, options) if bare else None
        probs = option_probs(logprobs)
        self.result = {"reply": completion.text, "replies": self.replies, "choice": choice, "attempts": attempt + 1,
                       "probs": probs[0] if probs else None, "mass": probs[1] if probs else None,
                       "logprobs": logprobs if probs else None, "error": "", "endpoints": self.tally.endpoints,
                       "prompt_tokens": self.tally.tokens, "prompt_tokens_read": self.tally.read}

    def failed(self) -> dict[str, Any]:
        """The result after the last failed try."""
        return {"reply": self.replies[-1] if self.replies else "", "replies": self.replies, "choice": None,
                "attempts": len(self.replies), "probs": None, "mass": None, "logprobs": None, "error": self.reason,
                "prompt_tokens": self.tally.tokens, "prompt_tokens_read": self.tally.read,
                "endpoints": self.tally.endpoints}


class ScoringJudge:
    """What the scoring protocols (pointwise, pairwise) share: one asker for a few options, no
    order of all answers (the one "order" is the models' own), and how a judgement is recorded."""

    protocol = ""
    labels: tuple[str, ...] = ()

    def __init__(self, config: JudgeConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.asker = ChoiceAsker(config, backend, judge_sampling(config))

    def orders_for(self, question_id: str, model_ids: Sequence[str]) -> list[list[str]]:
        return [list(model_ids)]

    def judgement(self, question: Question, model_ids: Sequence[str], order_index: int, scores: dict[str, float],
                  details: list[dict[str, Any]], replies: list[str], error: str, start: float) -> Judgement:
        """The Judgement of one question: ranks from ``scores``, or failed (no ranks, no scores) with ``error``."""
        ok = not error
        tally = PromptTally()
        for detail in details:
            tally.add_counts(detail.get("prompt_tokens"), detail.get("prompt_tokens_read"))
        return Judgement(question_id=question.question_id, judge_id=self.config.id, protocol=self.protocol,
                         order=list(model_ids), labels=list(self.labels),
                         ranks=ranks_from_scores(scores) if ok else {}, ok=ok,
                         attempts=sum(d["attempts"] for d in details), raw_replies=replies, error=error,
                         seconds=time.monotonic() - start, order_index=order_index,
                         scores=scores if ok else {}, details=details,
                         prompt_tokens=tally.tokens, prompt_tokens_read=tally.read,
                         endpoints=[url for detail in details for url in detail.get("endpoints", [])])
