"""How the pointwise prompt layouts of 2026-12-02 were checked (the shipped layout puts the
instruction after the references, right before the answer):

    python variants.py A|B|C    # writes pointwise-<variant>.json: judge-check, 40 questions, no repeats

A: the instruction in the system message (read once per study); B: the instruction first in the
user message; C: the instruction in the system message and a short cue before the answer.
"""

import sys

import raq
import raq.judge_pointwise
from raq.prompts import POINTWISE_ASK, SCORING_SYSTEM, judge_facts, one_line

VARIANT = sys.argv[1]
ASK = POINTWISE_ASK["yes-no"]
ASK_A = ("Does the candidate answer give the same answer as one of the correct answers? Extra words or "
         "a full sentence are fine; a different answer, or no answer, is not. Reply yes or no.")
ASK_B = ("Does the candidate answer below give the same answer as one of the correct answers below? Extra words or "
         "a full sentence are fine; a different answer, or no answer, is not. Reply yes or no.")


def messages(question, answer, *, grades="yes-no", context_chars=2000, show_context=False):
    facts = judge_facts(question, context_chars, show_context)
    candidate = f"Candidate answer:\n{one_line(answer)}"
    if VARIANT == "A":
        return [{"role": "system", "content": f"{SCORING_SYSTEM} {ASK_A}"},
                {"role": "user", "content": facts + candidate}]
    if VARIANT == "B":
        return [{"role": "system", "content": SCORING_SYSTEM},
                {"role": "user", "content": ASK_B + "\n\n" + facts + candidate}]
    if VARIANT == "C":
        return [{"role": "system", "content": f"{SCORING_SYSTEM} {ASK}"},
                {"role": "user",
                 "content": facts + "Same answer as a correct answer? Reply yes or no.\n\n" + candidate}]
    raise SystemExit(f"unknown variant {VARIANT!r}")


raq.judge_pointwise.prompts.pointwise_messages = messages
raq.check_judge("config.yaml", questions=40, repeats=0, out=f"pointwise-{VARIANT}.json", progress=False)
