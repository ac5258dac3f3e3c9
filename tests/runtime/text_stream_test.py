from tfcompress.runtime import TextStream


def _bytes_of(pieces):
    return lambda i: pieces[i]


def test_a_character_split_across_tokens_is_held_until_complete():
    pieces = [
        b"caf",
        "é".encode()[:1],
        "é".encode()[1:],
        b"!",
        "🙂".encode()[:2],
        "🙂".encode()[2:],
    ]
    stream = TextStream(_bytes_of(pieces))
    shown = [stream.push(i) for i in range(len(pieces))]
    assert shown == ["caf", "", "é", "!", "", "🙂"]
    assert stream.flush() == ""
    assert stream.text == "café!🙂"


def test_an_incomplete_character_at_the_end_becomes_a_replacement():
    stream = TextStream(_bytes_of([b"a", "é".encode()[:1]]))
    assert stream.push(0) + stream.push(1) == "a"
    assert stream.flush() == "\ufffd"


def test_stop_string_is_held_back_then_dropped():
    pieces = [b"Hello", b" U", b"ser", b":", b" more"]
    stream = TextStream(_bytes_of(pieces), stop_strings=["User:"])
    shown = [stream.push(i) for i in range(3)]
    assert shown == ["Hello", " ", ""]
    assert stream.push(3) == ""
    assert stream.stopped
    assert stream.push(4) == "" and stream.flush() == ""
    assert stream.text == "Hello "


def test_a_false_start_of_a_stop_string_is_released():
    stream = TextStream(_bytes_of([b"Us", b"es"]), stop_strings=["User:"])
    assert stream.push(0) == ""
    assert stream.push(1) == "Uses"
    assert not stream.stopped
