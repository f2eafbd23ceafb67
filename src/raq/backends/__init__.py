"""Ways to run a model, all behind one contract (:mod:`raq.backends.base`):

- :mod:`~raq.backends.llama`: llama.cpp in this process, one sequence or several decoded together;
- :mod:`~raq.backends.openai_http`: any OpenAI-compatible endpoint, over one or several base URLs;
- :mod:`~raq.backends.local_server`: a GGUF behind a llama.cpp server that raq starts and stops;
- :mod:`~raq.backends.fake`: scripted replies, for tests;
- :mod:`~raq.backends.factory`: which of these a config asks for.

Importing this package is light: llama_cpp and openai load only when a backend is made.
"""

from .base import Backend, Completion, Message, PromptTooLong, Request, Sampling
from .fake import FakeBackend, FakeBackends, ScriptedReply

__all__ = ["Backend", "Completion", "FakeBackend", "FakeBackends", "Message", "PromptTooLong", "Request", "Sampling",
           "ScriptedReply"]
