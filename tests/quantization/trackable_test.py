import keras
import tensorflow as tf

import testing
import tfcompress.quantization as tq


def test_quantized_model_exports_as_saved_model(tmp_path):
    """Swapped layers live in edited tracked lists; they must stay saveable."""
    qat = tq.quantize_model(testing.functional_dense())
    archive = keras.export.ExportArchive()
    archive.track(qat)
    archive.add_endpoint(
        "serve", lambda x: qat(x, training=False), input_signature=[tf.TensorSpec((None, 16), tf.float32)]
    )
    archive.write_out(str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    x = testing.inputs_for(qat)
    testing.assert_outputs_close(restored.serve(x), qat(x, training=False))
