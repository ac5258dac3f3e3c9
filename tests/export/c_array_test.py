import shutil
import subprocess

import numpy as np
import pytest

from tfcompress import export

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

_DUMP_MAIN = """
#include <cstdio>
#include <cstdint>
#include "conv_model.h"
int main(int argc, char** argv) {
  std::FILE* file = std::fopen(argv[1], "wb");
  std::fwrite(conv_model, 1, conv_model_len, file);
  std::fclose(file);
  static_assert(conv_model_arena_size_estimate > 0, "arena estimate");
  return reinterpret_cast<std::uintptr_t>(conv_model) % 16 == 0 ? 0 : 3;
}
"""


@pytest.fixture
def conv_int8(conv_model, calibration_data):
    return export.to_tflite(
        conv_model,
        "int8",
        representative_data=calibration_data(conv_model, 16),
        int8_io=True,
        verify=False,
    ).tflite_bytes


def test_c_array_compiles_and_holds_the_flatbuffer(tmp_path, conv_int8):
    result = export.to_c_array(conv_int8, name="conv_model", path=tmp_path)
    assert result.header_path == str(tmp_path / "conv_model.h")
    assert result.source_path == str(tmp_path / "conv_model.cc")
    assert "alignas(16) const unsigned char conv_model[]" in result.source
    assert f"const unsigned int conv_model_len = {len(conv_int8)};" in result.source

    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-Wall",
            "-Werror",
            "-c",
            result.source_path,
            "-o",
            str(tmp_path / "conv_model.o"),
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "main.cc").write_text(_DUMP_MAIN)
    binary = tmp_path / "dump"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-I",
            str(tmp_path),
            str(tmp_path / "main.cc"),
            result.source_path,
            "-o",
            str(binary),
        ],
        check=True,
        capture_output=True,
    )
    dumped = tmp_path / "dumped.tflite"
    run = subprocess.run([str(binary), str(dumped)], check=False)
    assert run.returncode == 0, "the array is not 16-byte aligned"
    assert dumped.read_bytes() == conv_int8


def test_resolver_lines_and_estimates(conv_int8):
    result = export.to_c_array(conv_int8, name="conv_model")
    assert result.header_path is None and result.source_path is None
    assert result.ops == [
        "CONV_2D",
        "MAX_POOL_2D",
        "CONV_2D",
        "MEAN",
        "FULLY_CONNECTED",
    ]
    assert result.resolver_code.splitlines() == [
        "tflite::MicroMutableOpResolver<4> conv_model_resolver;",
        "conv_model_resolver.AddConv2D();",
        "conv_model_resolver.AddFullyConnected();",
        "conv_model_resolver.AddMaxPool2D();",
        "conv_model_resolver.AddMean();",
    ]
    assert result.unsupported_ops == []
    assert "//   conv_model_resolver.AddConv2D();" in result.header
    assert result.flash_bytes == len(conv_int8)
    # Peak at the max pool: its 14x14x16 int8 input and 7x7x16 output (the
    # first conv only holds 16x16x3 + 14x14x16).
    assert result.peak_live_bytes == 14 * 14 * 16 + 7 * 7 * 16
    assert result.activation_bytes_estimate >= result.peak_live_bytes
    assert result.arena_bytes_estimate > result.activation_bytes_estimate


def test_reads_a_path_and_rejects_bad_input(tmp_path, conv_int8):
    file = tmp_path / "m.tflite"
    file.write_bytes(conv_int8)
    assert export.to_c_array(file).flash_bytes == len(conv_int8)
    with pytest.raises(ValueError, match="`name` must be a C identifier"):
        export.to_c_array(conv_int8, name="9model")
    with pytest.raises(ValueError, match="not a valid TFLite flatbuffer"):
        export.to_c_array(b"\x00" * 32)
    with pytest.raises(TypeError, match="must be TFLite flatbuffer bytes or a path"):
        export.to_c_array(np.zeros(3))
