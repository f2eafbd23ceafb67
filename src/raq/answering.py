"""The answering phase: every contestant answers every question not answered yet, one model in
memory at a time, each answer on disk the moment it is finished."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .backends.factory import Backends
from .checks import ModelFile
from .config import RunConfig
from .generator import Generator
from .memory import PeakMemory
from .progress import progress_bar
from .records import Answer, Question
from .store import RunDir

#: Questions handed to the backend at a time, per request it serves at once: a few batches'
#: worth, so that an interrupted run keeps what was finished.
CHUNK_PER_SLOT = 4


def by_context(questions: Sequence[Question]) -> list[Question]:
    """The questions with those about one context next to each other (in first-seen order)."""
    first_seen: dict[str, int] = {}
    for question in questions:
        first_seen.setdefault(question.context, len(first_seen))
    return sorted(questions, key=lambda q: first_seen[q.context])


def answers_of(generator: Generator, questions: Sequence[Question]) -> Iterator[Answer]:
    """The generator's answers, a few batches at a time."""
    if generator.capacity > 1:
        questions = by_context(questions)
    chunk = CHUNK_PER_SLOT * generator.capacity if generator.capacity > 1 else 1
    for start in range(0, len(questions), chunk):
        yield from generator.answer_many(questions[start:start + chunk])


def generate(config: RunConfig, run: RunDir, questions: list[Question], files: dict[str, ModelFile],
             backends: Backends, progress: bool | None = None) -> list[Answer]:
    """Have every model answer every question it has not answered yet; ``files`` maps model ids
    to their verified GGUF files. With ``generation.engine: ray`` the in-process models answer on a
    Ray cluster first (:mod:`raq.engine_ray`); served models answer here, as always."""
    offer_abstention = offers_abstention(config, questions)
    if config.generation.engine == "ray" and any(model.base_url is None for model in config.models):
        from .engine_ray import generate_on_ray

        generate_on_ray(config, run, questions, files, backends, progress, offer_abstention=offer_abstention,
                        answer_block=answers_of, arrange=by_context, chunk_per_slot=CHUNK_PER_SLOT)
    done = {(a.question_id, a.model_id) for a in run.answers(repair=True)}
    models_info = run.manifest().get("models", {})
    for model in config.models:
        todo = [q for q in questions if (q.question_id, model.id) not in done]
        if not todo:
            continue
        file = files.get(model.id)
        with PeakMemory() as memory:
            backend = backends.contestant(model, config.generation, file.path if file else None)
            generator = Generator(model, config.generation, backend, offer_abstention)
            try:
                models_info[model.id] = {**generator.info(), "ref": model.gguf or model.model,
                                         "sha256": file.sha256 if file else None}
                run.update_manifest(models=models_info)
                if config.generation.warmup:
                    generator.warm_up()
                with progress_bar(len(todo), f"answering [{model.id}]", progress) as bar:
                    for answer in answers_of(generator, todo):
                        run.append_answer(answer)
                        bar.update()
            finally:
                memory.stop()  # before the model is freed
                generator.close()
        models_info[model.id]["memory"] = memory_record(memory, model.base_url is not None, len(todo))
        run.update_manifest(models=models_info)
    return run.answers()


def offers_abstention(config: RunConfig, questions: Sequence[Question]) -> bool:
    """Whether the answering prompts offer to say that the text does not answer (the raq protocol:
    ``generation.abstention``; 'auto': when a question of the study's sample has no gold answer)."""
    setting = config.generation.abstention
    return setting == "always" or (setting == "auto" and not all(q.answerable for q in questions))


def memory_record(memory: PeakMemory, served: bool, answered: int) -> dict[str, Any]:
    """What the manifest keeps of a model's memory while it answered ``answered`` questions."""
    if served:
        return {"peak_rss_mib": None, "rss_before_mib": None, "added_rss_mib": None, "answered": answered,
                "method": "not measured: the model is served by another process"}
    return {**memory.record(), "answered": answered}
