import keras
import keras_hub

from tfcompress.sparsity import prune_structured


def _llama():
    keras.utils.set_random_seed(0)
    return keras_hub.models.Llama3Backbone(
        vocabulary_size=64,
        num_layers=2,
        num_query_heads=9,
        num_key_value_heads=3,
        hidden_dim=36,
        intermediate_dim=32,
    )


def test_grouped_query_attention_reports_key_value_heads_and_query_heads_apart():
    model = _llama()
    pruned, report = prune_structured(
        model,
        heads={"transformer_layer_0": 0.34, "transformer_layer_1": 0.67},
        criterion="magnitude",
        return_report=True,
    )
    rows = {r["path"]: r for r in report.rows}
    assert [
        (r["before"], r["after"], r["query_heads_before"], r["query_heads_after"])
        for r in (rows["transformer_layer_0"], rows["transformer_layer_1"])
    ] == [(3, 2, 9, 6), (3, 1, 9, 3)]
    attention = [b._self_attention_layer for b in pruned.transformer_layers]
    assert [(a.num_query_heads, a.num_key_value_heads) for a in attention] == [(6, 2), (3, 1)]
    text = str(report)
    assert "kv heads transformer_layer_0" in text and "9 -> 6" in text and "9 -> 3" in text


def test_multi_head_attention_rows_have_no_query_head_columns():
    keras.utils.set_random_seed(0)
    model = keras_hub.models.BertBackbone(
        vocabulary_size=64,
        num_layers=1,
        num_heads=4,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=12,
    )
    _, report = prune_structured(model, heads=0.5, criterion="magnitude", return_report=True)
    (row,) = report.rows
    assert (row["before"], row["after"]) == (4, 2) and "query_heads_before" not in row
    assert "heads    transformer_layer_0" in str(report)
