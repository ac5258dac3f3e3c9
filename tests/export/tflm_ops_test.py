from tfcompress.export.tflm_ops import TFLM_METHODS, resolver_methods


def test_methods_are_sorted_unique_and_unsupported_ops_listed():
    methods, unsupported = resolver_methods(["GELU", "ADD", "CONV_2D", "ADD", "FlexCumprod"])
    assert methods == ["AddAdd", "AddConv2D"]
    assert unsupported == ["FlexCumprod", "GELU"]


def test_method_names_follow_the_tflm_spelling():
    assert TFLM_METHODS["DEPTHWISE_CONV_2D"] == "AddDepthwiseConv2D"
    assert TFLM_METHODS["BATCH_TO_SPACE_ND"] == "AddBatchToSpaceNd"
    assert TFLM_METHODS["UNIDIRECTIONAL_SEQUENCE_LSTM"] == "AddUnidirectionalSequenceLSTM"
    assert all(method.startswith("Add") for method in TFLM_METHODS.values())
    assert len(set(TFLM_METHODS.values())) == len(TFLM_METHODS)
