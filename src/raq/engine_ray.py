"""Answering on a Ray cluster (``generation.engine: ray``): the in-process models' questions in
tasks of a few questions each, spread over the cluster's nodes.

Each task is a streaming generator that loads its model on its node (the study's own backend
factory, the same GGUF path on every node), answers its questions with the local engine's
Generator, prompts and seeds (so greedy answers are the same), and yields each Answer as soon as
it is finished. The driver (this process) alone writes the run directory and skips any
(question, model) it has already. A failed task is sent again for its unanswered questions, at
most ``MAX_ATTEMPTS`` times in all; then the run stops with a BackendError (``--resume`` answers
the rest). A task asks Ray for ``generation.n_threads`` CPUs (unset: the smallest node's count)
and a GPU when its model offloads layers. The manifest records ``nodes`` (hostname, CPU, memory,
GPUs, llama.cpp build, ``most_tasks_at_once``) and ``models.<id>.nodes``; every answer its node.
Ray is imported here alone, and only when a study asks for this engine.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import environment
from .backends.factory import Backends
from .checks import ModelFile
from .config import GenerationConfig, ModelConfig, RunConfig
from .errors import BackendError, ModelFileError, RaqError
from .generator import Generator
from .memory import PeakMemory
from .progress import progress_bar
from .records import Answer, Question
from .store import RunDir

log = logging.getLogger(__name__)

#: Questions per task (with ``n_parallel`` > 1: rounded up to whole batches of the local engine).
TASK_QUESTIONS = 8
#: How many times a block of questions is sent to the cluster before the run gives up.
MAX_ATTEMPTS = 3
INSTALL_HINT = "pip install 'raq[ray]'"

AnswerBlock = Callable[[Generator, Sequence[Question]], Iterator[Answer]]
Arrange = Callable[[Sequence[Question]], list[Question]]


def import_ray() -> Any:
    """The ``ray`` module, or a RaqError saying how to install it."""
    try:
        import ray
        import ray.exceptions
    except ImportError as error:
        raise RaqError(f"generation.engine 'ray' needs Ray, which cannot be imported ({error}): "
                       f"{INSTALL_HINT}") from None
    return ray


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (None: the one started on this machine, else a new local
    one), unless this process already has; whether this call joined it."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise BackendError(f"generation.ray_address {address!r}: cannot join a Ray cluster: {error}") from None
    return True


# --- the worker's side ----------------------------------------------------------------------

@functools.cache
def machine_facts() -> dict[str, Any]:
    """This machine's hostname, CPU, memory, GPUs and llama-cpp-python version (asked once per worker)."""
    return {"hostname": socket.gethostname(), "cpu": environment.cpu_model(), "cpu_count": os.cpu_count(),
            "memory_gib": environment.memory_gib(), "gpus": environment.gpus(),
            "llama_cpp_python": environment.package_versions().get("llama-cpp-python")}


def check_file(model: ModelConfig, path: str | None, size: int | None, hostname: str) -> Path | None:
    """The GGUF as this node has it: the driver's file at the same path, of the same size."""
    if path is None:
        return None
    here = Path(path)
    if not here.is_file():
        raise ModelFileError(f"model {model.id!r}: {path} is not readable on node {hostname}: every node needs "
                             "the GGUFs at the same path")
    if size is not None and here.stat().st_size != size:
        raise ModelFileError(f"model {model.id!r}: {path} has {here.stat().st_size} bytes on node {hostname}, "
                             f"{size} where the study started: every node needs the same GGUFs")
    return here


def answer_task(model: ModelConfig, generation: GenerationConfig, path: str | None, size: int | None,
                questions: list[Question], offer_abstention: bool, backends: Backends,
                answers: AnswerBlock) -> Iterator[dict[str, Any]]:
    """The Ray task: load the model on this node, then yield ``start`` (the node's facts and the
    backend's settings), one ``answer`` per question as it is finished, and ``done`` (memory)."""
    import ray

    context = ray.get_runtime_context()
    node, facts = context.get_node_id(), machine_facts()
    gguf = check_file(model, path, size, facts["hostname"])
    cpus = context.get_assigned_resources().get("CPU")
    if generation.n_threads is None and cpus:  # as many threads as the task was given CPUs
        generation = generation.model_copy(update={"n_threads": max(1, int(cpus))})
    answered = 0
    with PeakMemory() as memory:
        backend = backends.contestant(model, generation, gguf)
        generator = Generator(model, generation, backend, offer_abstention)
        try:
            info = generator.info()
            yield {"kind": "start", "node": node, "info": info,
                   "facts": {**facts, "system_info": info.get("system_info")}}
            if generation.warmup:
                generator.warm_up()
            for answer in answers(generator, questions):
                answer.node = node
                answered += 1
                yield {"kind": "answer", "answer": answer}
        finally:
            memory.stop()  # before the model is freed
            generator.close()
    yield {"kind": "done", "memory": {**memory.record(), "answered": answered}}


# --- the driver's side ----------------------------------------------------------------------

@dataclass
class Task:
    """A block of one model's questions, and the reasons its earlier attempts failed."""

    model: ModelConfig
    questions: list[Question]
    attempt: int = 1
    errors: list[str] = field(default_factory=list)


def block_size(n_parallel: int, chunk_per_slot: int) -> int:
    """Questions per task: ``TASK_QUESTIONS``, rounded up to whole chunks of the local engine when
    answers are decoded together (so that the same questions share a batch)."""
    if n_parallel <= 1:
        return TASK_QUESTIONS
    chunk = chunk_per_slot * n_parallel
    return -(-TASK_QUESTIONS // chunk) * chunk


def plan_tasks(config: RunConfig, questions: Sequence[Question], done: set[tuple[str, str]], arrange: Arrange,
               chunk_per_slot: int) -> list[Task]:
    """The tasks of every in-process model's questions not answered yet, in the local engine's order."""
    n_parallel, tasks = config.generation.n_parallel, list[Task]()
    size = block_size(n_parallel, chunk_per_slot)
    for model in config.models:
        if model.base_url is not None:
            continue
        todo = [q for q in questions if (q.question_id, model.id) not in done]
        if n_parallel > 1:
            todo = arrange(todo)
        tasks += [Task(model, todo[start:start + size]) for start in range(0, len(todo), size)]
    return tasks


def task_options(ray: Any, config: RunConfig) -> dict[str, dict[str, Any]]:
    """Per in-process model, the Ray options of its tasks; BackendError when no node could run them."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpus = [float(r.get("CPU", 0)) for r in nodes if r.get("CPU", 0) > 0]
    if not cpus:
        raise BackendError("the Ray cluster has no node with CPUs to answer on")
    threads = config.generation.n_threads or min(cpus)
    any_gpu = any(float(r.get("GPU", 0)) > 0 for r in nodes)
    options: dict[str, dict[str, Any]] = {}
    for model in config.models:
        if model.base_url is not None:
            continue
        if model.n_gpu_layers and not any_gpu:
            log.warning("model %s: n_gpu_layers is %d but no node of the Ray cluster has a GPU: its tasks ask for "
                        "CPUs only (a CPU-only llama.cpp build runs every layer on the CPU)", model.id,
                        model.n_gpu_layers)
        gpus = 1 if model.n_gpu_layers and any_gpu else 0
        if not any(float(r.get("CPU", 0)) >= threads and float(r.get("GPU", 0)) >= gpus for r in nodes):
            need = f"{threads:g} CPUs" + (" and a GPU" if gpus else "")
            raise BackendError(f"model {model.id!r}: no node of the Ray cluster has {need} (generation.n_threads, "
                               "models[].n_gpu_layers)")
        options[model.id] = {"num_cpus": threads, "num_gpus": gpus, "name": f"raq-answer-{model.id}"}
    return options


def reason(error: BaseException) -> str:
    """One line saying why a task failed."""
    cause = getattr(error, "cause", None)
    shown = cause if isinstance(cause, BaseException) else error
    lines = str(shown).strip().splitlines()
    text = f"{type(shown).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 300 else text[:297] + "..."


def memory_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the manifest keeps of a model's memory on Ray: the task that added the most (each task
    loads the model in its own worker), and how many questions all of them answered."""
    top = max(records, key=lambda r: r.get("added_rss_mib") or 0.0)
    return {**top, "answered": sum(r["answered"] for r in records), "tasks": len(records),
            "method": f"{top['method']}; the largest of {len(records)} Ray tasks, each loading the model itself"}


class Driver:
    """Sends the tasks, stores what they yield, and sends a failed task's unanswered questions again."""

    def __init__(self, ray: Any, config: RunConfig, run: RunDir, files: dict[str, ModelFile], backends: Backends,
                 offer_abstention: bool, answers: AnswerBlock, done: set[tuple[str, str]]) -> None:
        self.ray, self.config, self.run, self.files, self.done = ray, config, run, files, done
        self.arguments = (offer_abstention, backends, answers)
        self.remote = ray.remote(num_returns="streaming", max_retries=0)(answer_task)
        self.options = task_options(ray, config)
        manifest = run.manifest()
        self.models_info: dict[str, Any] = manifest.get("models", {})
        self.nodes: dict[str, Any] = manifest.get("nodes", {})
        self.started: set[str] = set()
        self.memory: dict[str, list[dict[str, Any]]] = {}
        self.flights: dict[int, tuple[Any, Task]] = {}
        self.on_node: dict[int, str] = {}  # a started task's node
        self.failed: list[Task] = []
        self.bar: Any = None

    def answer(self, tasks: list[Task], progress: bool | None) -> None:
        """Run every task to its end (sending failed ones again); BackendError if some never succeeded."""
        with progress_bar(sum(len(t.questions) for t in tasks), "answering on Ray", progress) as self.bar:
            try:
                for task in tasks:
                    self.submit(task)
                while self.flights:
                    self.step()
            finally:
                self.cancel()
        for model_id, records in self.memory.items():
            self.models_info[model_id]["memory"] = memory_of(records)
        self.run.update_manifest(models=self.models_info, nodes=self.nodes)
        if self.failed:
            told = "; ".join(f"model {t.model.id!r}: {len(t.questions)} questions after {t.attempt} attempts "
                             f"(last: {t.errors[-1]})" for t in self.failed)
            raise BackendError(f"answering on Ray failed for {told}; the answers finished are kept: "
                               f"resume with --resume {self.run.path}")

    def submit(self, task: Task) -> None:
        file = self.files.get(task.model.id)
        path, size = (str(file.path), file.path.stat().st_size) if file else (None, None)
        try:
            flight = self.remote.options(**self.options[task.model.id]).remote(
                task.model, self.config.generation, path, size, task.questions, *self.arguments)
        except TypeError as error:  # an argument (the backend factory) that cannot be sent
            raise BackendError(f"the answering task cannot be sent to the Ray cluster: {error}") from None
        self.flights[id(flight)] = (flight, task)

    def step(self) -> None:
        """Take the next message of each task that has one ready."""
        ready, _ = self.ray.wait([flight for flight, _ in self.flights.values()], num_returns=1)
        for flight in ready:
            task = self.flights[id(flight)][1]
            try:
                message = self.ray.get(next(flight))
            except StopIteration:
                self.ended(flight)
                left = self.unanswered(task)
                if left:
                    self.retry(task, f"the task ended with {len(left)} questions unanswered")
            except self.ray.exceptions.RayError as error:  # the worker died, or the task raised
                self.ended(flight)
                self.retry(task, reason(error))
            else:
                self.receive(task, message, id(flight))

    def ended(self, flight: Any) -> None:
        del self.flights[id(flight)]
        self.on_node.pop(id(flight), None)

    def unanswered(self, task: Task) -> list[Question]:
        return [q for q in task.questions if (q.question_id, task.model.id) not in self.done]

    def retry(self, task: Task, why: str) -> None:
        """Send the task's unanswered questions again, or give up on them after ``MAX_ATTEMPTS``."""
        left = self.unanswered(task)
        log.warning("model %s: a Ray task failed (attempt %d of %d, %d questions unanswered): %s",
                    task.model.id, task.attempt, MAX_ATTEMPTS, len(left), why)
        if not left:
            return
        again = Task(task.model, left, task.attempt + 1, [*task.errors, why])
        if task.attempt >= MAX_ATTEMPTS:
            self.failed.append(Task(task.model, left, task.attempt, again.errors))
        else:
            self.submit(again)

    def receive(self, task: Task, message: dict[str, Any], flight: int) -> None:
        model = task.model
        if message["kind"] == "answer":
            answer: Answer = message["answer"]
            key = (answer.question_id, answer.model_id)
            if key not in self.done:
                self.run.append_answer(answer)
                self.done.add(key)
                self.bar.update()
        elif message["kind"] == "start":
            node = message["node"]
            self.on_node[flight] = node
            at_once = sum(n == node for n in self.on_node.values())
            earlier = self.nodes.get(node, {}).get("most_tasks_at_once", 0)
            self.nodes[node] = {**message["facts"], "most_tasks_at_once": max(earlier, at_once)}
            if model.id not in self.started:  # this run's settings replace those of an earlier one
                self.started.add(model.id)
                file = self.files.get(model.id)
                earlier = self.models_info.get(model.id, {}).get("nodes", [])
                self.models_info[model.id] = {**message["info"], "ref": model.gguf or model.model,
                                              "sha256": file.sha256 if file else None, "nodes": earlier}
            nodes = self.models_info[model.id]["nodes"]
            self.models_info[model.id]["nodes"] = sorted({*nodes, node})
            self.run.update_manifest(models=self.models_info, nodes=self.nodes)
        elif message["kind"] == "done":
            self.memory.setdefault(model.id, []).append(message["memory"])

    def cancel(self) -> None:
        """Stop the tasks still running (after an interruption)."""
        for flight, _ in self.flights.values():
            try:
                self.ray.cancel(flight, force=True)
            except Exception:  # already finished, or the cluster is gone
                log.debug("could not cancel a Ray task", exc_info=True)
        self.flights.clear()
        self.on_node.clear()


def generate_on_ray(config: RunConfig, run: RunDir, questions: list[Question], files: dict[str, ModelFile],
                    backends: Backends, progress: bool | None, *, offer_abstention: bool, answer_block: AnswerBlock,
                    arrange: Arrange, chunk_per_slot: int) -> None:
    """Have every in-process model answer every question it has not answered yet, on the Ray
    cluster of ``generation.ray_address``; ``answer_block``, ``arrange`` and ``chunk_per_slot`` are
    the local engine's (:func:`raq.answering.answers_of`, its ordering and its chunks), so that a
    task answers its questions exactly as the local engine would."""
    done = {(a.question_id, a.model_id) for a in run.answers(repair=True)}
    tasks = plan_tasks(config, questions, done, arrange, chunk_per_slot)
    if not tasks:
        return
    ray = import_ray()
    joined = connect(ray, config.generation.ray_address)
    try:
        Driver(ray, config, run, files, backends, offer_abstention, answer_block, done).answer(tasks, progress)
    finally:
        if joined:
            ray.shutdown()
