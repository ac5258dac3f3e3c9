"""Packaging for tfcompress."""

import setuptools

setuptools.setup(
    name="tfcompress",
    version="0.1.0",
    description=(
        "Keras 3 model compression: pruning, quantization-aware training, "
        "TFLite export and evaluation."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["tfcompress", "tfcompress.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.10,<3.16",
        "keras-hub>=0.30,<0.33",
        "ai-edge-litert>=2.0,<3",
        "absl-py>=1.0",
        # The chat runtime: byte-level BPE pre-tokenizer patterns, chat templates.
        "regex>=2022.1",
        "jinja2>=3.0",
        "numpy>=1.26",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-xdist>=3",  # the README's `-n 2`: the suite on two processes
            "scikit-learn>=1.3",
            "safetensors>=0.4",
            "gguf>=0.10",
        ],
        # TensorFlow Lite Micro's Python interpreter: to_c_array measures the
        # tensor arena and runs the model in TFLM. Only nightly (dev) releases
        # are published; the pre-release in the specifier lets pip take them.
        "micro": [
            "tflite-micro>=0.dev0",
        ],
        "llm": ["gguf>=0.10"],
        "bench": [
            "tensorflow-model-optimization==0.8.1",
            "tf-keras>=2.16,<2.22",
            "scikit-learn>=1.3",
            "safetensors>=0.4",
        ],
    },
    entry_points={"console_scripts": ["tfcompress=tfcompress.cli.main:run"]},
)
