"""`Generator`: chat with a generator `.tflite` file on LiteRT, without TensorFlow."""

import dataclasses
import mmap
import os
import pathlib
import time

import numpy as np

from tfcompress.runtime.bpe_tokenizer import BytePairTokenizer
from tfcompress.runtime.cache_engines import ENGINES, create_engine, quiet_native_logs
from tfcompress.runtime.chat_template import render_chat
from tfcompress.runtime.generator_metadata import read_metadata
from tfcompress.runtime.interpreter import _check_flatbuffer
from tfcompress.runtime.sampling import Sampler
from tfcompress.runtime.text_stream import TextStream


@dataclasses.dataclass
class GenerationResult:
    """One answer and its timings.

    Attributes:
        text: the generated text (stop strings and stop tokens left out).
        token_ids: the generated ids (a final stop token included).
        finish_reason: "stop_token", "stop_string", "max_new_tokens",
            "context_full" (the cache is full; `reset` or a file with a larger
            `cache_length`) or "interrupted" (`should_stop` returned True).
        prompt_tokens: prompt tokens run through the model this call.
        reused_tokens: prompt tokens found already in the cache, not re-run.
        prefill_seconds: time to run the prompt tokens.
        time_to_first_token: seconds from the call to the first generated id.
        decode_steps: generated tokens run through `decode`.
        decode_seconds: time of those steps (sampling included).
    """

    text: str
    token_ids: list
    finish_reason: str
    prompt_tokens: int
    reused_tokens: int
    prefill_seconds: float
    time_to_first_token: float
    decode_steps: int
    decode_seconds: float

    @property
    def prefill_tokens_per_second(self):
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds else float("nan")

    @property
    def decode_tokens_per_second(self):
        return self.decode_steps / self.decode_seconds if self.decode_seconds else float("nan")

    def summary(self):
        """One line: prefill tok/s, decode tok/s, time to first token."""
        return (
            f"[prefill {self.prompt_tokens} tok at {self.prefill_tokens_per_second:.1f} tok/s"
            f" ({self.reused_tokens} reused), decode {self.decode_steps} tok at "
            f"{self.decode_tokens_per_second:.1f} tok/s, first token after "
            f"{self.time_to_first_token * 1000:.0f} ms, {self.finish_reason}]"
        )


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)) or not pathlib.Path(path).is_file():
        raise ValueError(
            "`path` must be an existing generator .tflite file (from "
            f"`tfcompress.export.to_tflite_generator`). Received: path={path!r}"
        )
    where = f"The file {str(path)!r}"
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as content:
        _check_flatbuffer(content[:8], where)
        return read_metadata(content, where)


class Generator:
    """Prefill-then-decode text generation from a generator `.tflite` file.

    The file holds everything: the `decode` and `prefill_{T}` signatures, and
    the tokenizer, special tokens, chat template and default sampling in its
    `tfcompress_generator` metadata. Only LiteRT, numpy, `regex` (and jinja2
    for chat templates) are imported, not TensorFlow.

    The K/V cache persists between calls: `generate` and `chat` compare the
    new prompt's ids with the ids already in the cache and run only what
    follows their common prefix, so a chat's history is not re-run each
    turn. A prompt that does not fit in the cache raises before any work;
    an answer that fills the cache stops with `finish_reason="context_full"`.

    Args:
        path: the `.tflite` file.
        num_threads: CPU threads (None: LiteRT's choice).
        engine: "compiled_model" (LiteRT `CompiledModel`, one cache buffer
            set bound as input and output, updated in place: no per-token cache
            copy), "interpreter"
            (signature runners, which copy the caches in and out each step; any
            interpreter `tfcompress.runtime.load` supports) or "auto" (the
            first when ai-edge-litert provides it).
        quiet: hide LiteRT's native INFO log lines while loading.

    Raises:
        ValueError: not a generator file, unsupported metadata, bad arguments.

    Example:

    ```python
    generator = tfcompress.runtime.Generator("smollm2.tflite")
    result = generator.chat([{"role": "user", "content": "Capital of France?"}])
    print(result.text, result.summary())
    ```
    """

    def __init__(self, path, num_threads=None, engine="auto", quiet=True):
        if engine != "auto" and engine not in ENGINES:
            raise ValueError(
                f"`engine` must be 'auto' or one of {sorted(ENGINES)}. Received: engine={engine!r}"
            )
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(
                f"`num_threads` must be a positive int or None. Received: num_threads={num_threads!r}"
            )
        self.metadata = _check_path(path)
        self.path = str(path)
        meta = self.metadata
        self.cache_length = int(meta["cache_length"])
        self.prefill_lengths = sorted(int(t) for t in meta["prefill_lengths"])
        self.vocabulary_size = int(meta["vocabulary_size"])
        self.end_token_ids = [int(i) for i in meta["end_token_ids"]]
        self.pad_token_id = int(meta["pad_token_id"])
        self.chat_template = meta.get("chat_template")
        self.sampling = dict(meta.get("sampling") or {})
        spec = meta["tokenizer"]
        self.tokenizer = BytePairTokenizer(
            spec["vocabulary"],
            spec["merges"],
            special_tokens=spec.get("special_tokens"),
            pre_tokenizer=spec.get("pre_tokenizer") or "gpt2",
        )
        signatures = ["decode"] + [f"prefill_{t}" for t in self.prefill_lengths]
        self._engine = create_engine(
            engine, path, signatures, int(meta["num_layers"]), num_threads, quiet
        )
        self.engine = self._engine.name
        self._quiet = quiet
        self._tokens = []

    def close(self):
        """Releases the LiteRT model and buffers (quietly, as loading was)."""
        import gc

        with quiet_native_logs(self._quiet):
            self._engine = None
            gc.collect()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    @property
    def tokens(self):
        """The ids whose keys and values are in the cache, in order."""
        return list(self._tokens)

    def reset(self):
        """Empties the cache (a new conversation)."""
        self._engine.reset()
        self._tokens = []

    def _rewind(self, length):
        # Slots after `length` stay in memory but no query reaches them (a
        # query at position p attends only slots <= p) until they are rewritten.
        self._tokens = self._tokens[:length]

    def append(self, token_ids):
        """Runs `token_ids` after the cached ones; returns the logits after the last, `[V]`.

        All but the last go through the `prefill_{T}` signatures (padded with
        the pad id to the smallest T that fits, in chunks of the largest T
        when longer), the last through `decode`.

        Raises:
            ValueError: empty input, ids outside the vocabulary, or more ids
                than the cache has room for.
        """
        ids = [int(i) for i in token_ids]
        if not ids:
            raise ValueError("`token_ids` must not be empty.")
        if min(ids) < 0 or max(ids) >= self.vocabulary_size:
            raise ValueError(
                f"`token_ids` must be in [0, {self.vocabulary_size}). Received ids in "
                f"[{min(ids)}, {max(ids)}]."
            )
        position = len(self._tokens)
        if position + len(ids) > self.cache_length:
            raise ValueError(
                f"The context is full: {position} cached + {len(ids)} new tokens exceed the "
                f"cache_length {self.cache_length} of {self.path!r}. Call `reset()` (`/reset` "
                "in `tfcompress chat`) or export with a larger `cache_length`."
            )
        rest = ids[:-1]
        while rest:
            fits = [t for t in self.prefill_lengths if position + t <= self.cache_length]
            cover = [t for t in fits if t >= len(rest)]
            if cover or fits:
                length = min(cover) if cover else max(fits)
                chunk = rest[:length]
                tokens = np.full((1, length), self.pad_token_id, np.int32)
                tokens[0, : len(chunk)] = chunk
                positions = np.arange(position, position + length, dtype=np.int32)
                self._engine.run(f"prefill_{length}", tokens, positions)
            else:
                chunk = rest[:1]
                self._step(chunk[0], position)
            self._tokens.extend(chunk)
            position += len(chunk)
            rest = rest[len(chunk) :]
        logits = self._step(ids[-1], position)
        self._tokens.append(ids[-1])
        return logits

    def _step(self, token_id, position):
        return self._engine.run(
            "decode", np.array([[token_id]], np.int32), np.array([position], np.int32)
        )

    def logits(self, token_ids):
        """Teacher-forced logits `[len(token_ids), V]` from an empty cache, one `decode` step per id.

        The cache is reset first and holds `token_ids` afterwards.
        """
        self.reset()
        ids = [int(i) for i in token_ids]
        if len(ids) > self.cache_length:
            raise ValueError(
                f"`token_ids` has {len(ids)} ids; the cache of {self.path!r} holds "
                f"{self.cache_length}. Score shorter sequences."
            )
        return np.stack([self.append([i]) for i in ids])

    def sampler(self, temperature=None, top_k=None, top_p=None, seed=None):
        """A `Sampler` with the file's default sampling where an argument is None."""
        defaults = self.sampling
        return Sampler(
            temperature=defaults.get("temperature", 0.0) if temperature is None else temperature,
            top_k=defaults.get("top_k") if top_k is None else top_k,
            top_p=defaults.get("top_p", 1.0) if top_p is None else top_p,
            seed=seed,
        )

    def encode(self, text, add_start_token=None):
        """Token ids of `text`; the start token is prepended per the metadata's `add_start_token`."""
        ids = self.tokenizer.encode(text)
        if add_start_token is None:
            add_start_token = bool(self.metadata.get("add_start_token"))
        start = self.metadata.get("start_token_id")
        if add_start_token and start is not None:
            ids = [int(start)] + ids
        return ids

    def generate(
        self,
        prompt,
        max_new_tokens=256,
        sampler=None,
        stop_token_ids=None,
        stop_strings=(),
        on_text=None,
        should_stop=None,
    ):
        """Generates text after `prompt`, reusing the cache's common prefix with it.

        Args:
            prompt: text, or a list of token ids.
            max_new_tokens: at most this many generated ids.
            sampler: a `Sampler` (default: the file's sampling settings).
            stop_token_ids: ids that end the answer (default: the file's
                `end_token_ids`).
            stop_strings: texts that end the answer (not part of it).
            on_text: called with each piece of text as soon as it is
                complete UTF-8 (streaming).
            should_stop: called before each step; True ends the answer with
                `finish_reason="interrupted"` (e.g. set by a Ctrl-C handler).

        Returns:
            A `GenerationResult`.

        Raises:
            ValueError: the prompt does not fit in the cache, or bad arguments.
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(
                f"`max_new_tokens` must be an int >= 1. Received: max_new_tokens={max_new_tokens!r}"
            )
        start = time.perf_counter()
        ids = self.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        if not ids:
            raise ValueError("`prompt` must not be empty.")
        sampler = sampler or self.sampler()
        stops = set(self.end_token_ids if stop_token_ids is None else stop_token_ids)
        reused = 0
        while reused < min(len(ids) - 1, len(self._tokens)) and self._tokens[reused] == ids[reused]:
            reused += 1
        if len(ids) >= self.cache_length:
            raise ValueError(
                f"The prompt has {len(ids)} tokens; the cache_length of {self.path!r} is "
                f"{self.cache_length}, which must also leave room for the answer. Shorten "
                "the prompt or export with a larger `cache_length`."
            )
        self._rewind(reused)
        logits = self.append(ids[reused:])
        prefill_seconds = time.perf_counter() - start
        stream = TextStream(self.tokenizer.token_bytes, stop_strings)
        generated, steps, reason, first_token = [], 0, "max_new_tokens", None
        decode_start = time.perf_counter()
        while True:
            token = sampler(logits)
            if first_token is None:
                first_token = time.perf_counter() - start
            generated.append(token)
            if token in stops:
                reason = "stop_token"
                break
            piece = stream.push(token)
            if piece and on_text:
                on_text(piece)
            if stream.stopped:
                reason = "stop_string"
                break
            if len(generated) >= max_new_tokens:
                break
            if len(self._tokens) >= self.cache_length:
                reason = "context_full"
                break
            if should_stop is not None and should_stop():
                reason = "interrupted"
                break
            logits = self.append([token])
            steps += 1
        tail = stream.flush()
        if tail and on_text:
            on_text(tail)
        return GenerationResult(
            text=stream.text,
            token_ids=generated,
            finish_reason=reason,
            prompt_tokens=len(ids) - reused,
            reused_tokens=reused,
            prefill_seconds=prefill_seconds,
            time_to_first_token=first_token,
            decode_steps=steps,
            decode_seconds=time.perf_counter() - decode_start,
        )

    def render(self, messages, add_generation_prompt=True):
        """The prompt text of `messages` under the file's chat template (ChatML without one)."""
        special = {v: k for k, v in self.tokenizer.special_tokens.items()}
        start, ends = self.metadata.get("start_token_id"), self.end_token_ids
        return render_chat(
            messages,
            self.chat_template,
            add_generation_prompt=add_generation_prompt,
            bos_token=special.get(start, ""),
            eos_token=special.get(ends[0], "") if ends else "",
        )

    def chat(self, messages, **kwargs):
        """`generate` on `messages` rendered with the chat template; kwargs as for `generate`.

        The prompt is run with no start token added (templates add their own).
        """
        ids = self.tokenizer.encode(self.render(messages))
        return self.generate(ids, **kwargs)
