"""The `tfcompress` command: `tfcompress <command> [--flags]`.

Each command is a module with absl flags and a `main(argv)`; only the chosen
command's module is imported, so its flags are the only ones defined.
"""

import importlib
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
}


def usage():
    lines = ["usage: tfcompress <command> [--flags]", "", "commands:"]
    width = max(len(name) for name in COMMANDS)
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {help_text}")
    lines += ["", "`tfcompress <command> --help` lists a command's flags."]
    return "\n".join(lines)


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
    # The command line is an application, not a library import: quiet
    # TensorFlow's C++ start-up logs unless the user asked for them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app

    module = importlib.import_module(COMMANDS[command][0])
    app.run(module.main, argv=[f"tfcompress {command}"] + argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(run())
