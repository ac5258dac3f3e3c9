"""The `tfcompress` command: `tfcompress <command> [--flags]`.

Each command is a module with absl flags and a `main(argv)`; only the chosen
command's module is imported, so its flags are the only ones defined.

Every command runs quiet and fails in one line: TensorFlow, absl and the
TFLite converter log at warning level unless absl's `--verbosity` is given,
and a ValueError, TypeError or OSError (bad input: our messages say what to
fix) prints `tfcompress <command>: <message>` to stderr and exits 1, with the
traceback only at `--verbosity=1` or with `TFCOMPRESS_TRACEBACK=1`.
"""

import importlib
import logging
import os
import sys

COMMANDS = {
    "demo": (
        "tfcompress.cli.demo",
        "Train the bundled digits CNN, prune and quantize it, export TFLite "
        "(float32/float16/dynamic-int8/int8) and a C array, and print the report.",
    ),
    "export": (
        "tfcompress.cli.export_command",
        "Convert a .keras model to a verified TFLite flatbuffer (and C array).",
    ),
    "inspect": (
        "tfcompress.cli.inspect_command",
        "Show a .tflite file's ops, tensor dtypes, quantization and sparsity.",
    ),
    "bench": (
        "tfcompress.cli.bench_command",
        "Time a .tflite file with LiteRT (p50/p90 latency).",
    ),
    "chat": (
        "tfcompress.cli.chat_command",
        "Chat with a generator .tflite file (default: the bundled SmolLM2, exported once "
        "and cached) on LiteRT.",
    ),
}


def usage():
    lines = ["usage: tfcompress <command> [--flags]", "", "commands:"]
    width = max(len(name) for name in COMMANDS)
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {help_text}")
    lines += [
        "",
        "`tfcompress <command> --help` lists a command's flags. Every command also takes",
        "--verbosity=0 (TensorFlow, absl and converter INFO logs) and --verbosity=1 (also",
        "the traceback of an error; or set TFCOMPRESS_TRACEBACK=1).",
    ]
    return "\n".join(lines)


def configure_logging():
    """Warning-level logging unless `--verbosity` was given on the command line.

    Runs after absl parsed the flags and before the command imports
    TensorFlow, which reads TF_CPP_MIN_LOG_LEVEL once, at import. Only the
    command line does this; importing tfcompress changes no global state.
    """
    from absl import flags, logging as absl_logging

    if flags.FLAGS["verbosity"].present:
        # absl already set the Python levels from the flag.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    # 2 hides the C++ INFO and WARNING lines, errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # `app.run` raises absl's default verbosity to INFO, which lets through
    # the converter's and SavedModel writer's INFO lines ("Using new
    # converter", "Assets written to", "Sharding callback duration").
    absl_logging.set_verbosity(absl_logging.WARNING)
    # The logger `tf.get_logger()` returns; set by name, without importing TF.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)


def traceback_wanted():
    """Whether a failing command shows its traceback (--verbosity >= 1 or TFCOMPRESS_TRACEBACK=1)."""
    from absl import flags

    return flags.FLAGS.verbosity >= 1 or os.environ.get("TFCOMPRESS_TRACEBACK", "0") not in (
        "",
        "0",
    )


def command_main(command, main):
    """`main` of a command module, quiet and with one-line errors."""

    def run_command(argv):
        configure_logging()
        try:
            return main(argv)
        except (ValueError, TypeError, OSError) as error:
            if traceback_wanted():
                raise
            print(
                f"tfcompress {command}: {error} (--verbosity=1 or TFCOMPRESS_TRACEBACK=1 shows the traceback)",
                file=sys.stderr,
            )
            return 1

    return run_command


def run(argv=None):
    """Console entry point."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command = argv[1]
    if command not in COMMANDS:
        print(
            f"tfcompress: unknown command {command!r}. Choose one of: "
            f"{', '.join(COMMANDS)}.\n\n{usage()}",
            file=sys.stderr,
        )
        return 2
    from absl import app

    module = importlib.import_module(COMMANDS[command][0])
    app.run(command_main(command, module.main), argv=[f"tfcompress {command}"] + argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(run())
