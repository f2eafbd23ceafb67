"""One sequence's decoding bookkeeping (SequenceDecode) on a stand-in vocabulary: when it ends
(an end-of-generation token, a stop string, the token limit, a fixed choice that nothing longer
extends) and the text it gives."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from raq.backends.llama_decode import SequenceDecode

EOG = 0
PIECES = {1: b"1", 2: b"2", 3: b"y", 4: b"es", 5: b" or", 6: b"\xc3", 7: b"\xa9", 8: b"no"}


class Vocabulary:
    """The two calls of llama.cpp's library that SequenceDecode makes, on a few tokens."""

    def llama_vocab_is_eog(self, vocab: Any, token: int) -> bool:
        return token == EOG

    def llama_token_to_piece(self, vocab: Any, token: int, buf: Any, size: int, lstrip: int, special: bool) -> int:
        piece = PIECES[token]
        assert len(piece) <= size
        ctypes.memmove(buf, piece, len(piece))
        return len(piece)


def decode(*, choices: tuple[str, ...] = (), limit: int = 8, stop: tuple[str, ...] = ()) -> SequenceDecode:
    return SequenceDecode(Vocabulary(), None, ctypes.create_string_buffer(16), limit=limit, stop=stop, start=0.0,
                          choices=choices)


def run(seq: SequenceDecode, tokens: list[int]) -> int:
    """Feed ``tokens`` until the sequence is finished; how many were taken."""
    for taken, token in enumerate(tokens, 1):
        if seq.step(token):
            return taken
    return len(tokens)


def test_a_choice_that_nothing_longer_extends_ends_the_sequence_at_once() -> None:
    seq = decode(choices=("0", "1", "2"))
    assert run(seq, [1, EOG]) == 1  # the end-of-generation token is never needed
    assert seq.finish == "stop" and seq.text() == "1" and seq.generated == [1]
    completion = seq.completion(prompt_tokens=5, total_s=0.1, counters={})
    assert completion.finish_reason == "stop" and completion.generated_tokens == 1 and completion.text == "1"


def test_a_choice_of_several_tokens_ends_with_its_last_token() -> None:
    seq = decode(choices=("yes", "no"))
    assert run(seq, [3, 4, EOG]) == 2 and seq.finish == "stop" and seq.text() == "yes"
    seq = decode(choices=("yes", "no"))
    assert run(seq, [8, EOG]) == 1 and seq.text() == "no"


def test_a_choice_that_a_longer_one_extends_goes_on() -> None:
    longer = decode(choices=("1", "12"))
    assert run(longer, [1, 2, EOG]) == 2 and longer.finish == "stop" and longer.text() == "12"
    shorter = decode(choices=("1", "12"))
    assert run(shorter, [1, EOG]) == 2  # after "1" the next token decides
    assert shorter.finish == "stop" and shorter.text() == "1" and shorter.generated == [1]
    phrase = decode(choices=("1", "1 or 2"))
    assert not phrase.step(1) and not phrase.step(5) and phrase.finish is None  # "1 or" is no choice yet


def test_a_choice_split_inside_a_character_ends_once_the_character_is_whole() -> None:
    seq = decode(choices=("\u00e9", "no"))
    assert run(seq, [6, 7, EOG]) == 2 and seq.finish == "stop" and seq.text() == "\u00e9"


def test_without_choices_only_the_end_token_a_stop_string_or_the_limit_ends_it() -> None:
    seq = decode()
    assert run(seq, [1, EOG]) == 2 and seq.finish == "stop" and seq.text() == "1"
    cut = decode(stop=(" or",))
    assert run(cut, [1, 5, 2]) == 2 and cut.finish == "stop" and cut.text() == "1"
    limited = decode(limit=2)
    assert run(limited, [1, 2, 1]) == 2 and limited.finish == "length" and limited.text() == "12"


@pytest.mark.parametrize(("choices", "tokens", "finish", "text"), [
    (("12",), [1], "length", "1"),  # the limit comes before the choice is complete
    (("1",), [1], "stop", "1"),  # a choice complete on the last allowed token is a stop
])
def test_the_token_limit_against_a_choice(choices: tuple[str, ...], tokens: list[int], finish: str,
                                          text: str) -> None:
    seq = decode(choices=choices, limit=1)
    assert run(seq, tokens) == 1 and seq.finish == finish and seq.text() == text
