"""`TextStream`: token ids in, UTF-8-safe text out, with stop strings held back."""

import codecs


class TextStream:
    """Turns generated token ids into text pieces as they arrive.

    A byte-level BPE token can end inside a multi-byte character; its bytes
    wait until the character is complete, so no piece holds a broken
    character. Text that could be the start of a stop string is held back
    until it either completes the stop string (then it and everything after
    it is dropped and `stopped` becomes True) or cannot any more.

    Args:
        token_bytes: function of a token id to its bytes
            (`BytePairTokenizer.token_bytes`).
        stop_strings: strings that end the answer; not part of the text.

    Example:

    ```python
    stream = tfcompress.runtime.TextStream(tokenizer.token_bytes, ["\\nUser:"])
    for token in tokens:
        print(stream.push(token), end="")
    print(stream.flush())
    ```
    """

    def __init__(self, token_bytes, stop_strings=()):
        self._token_bytes = token_bytes
        self.stop_strings = [s for s in stop_strings if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.text = ""
        self.stopped = False

    def push(self, token_id):
        """Adds one token; returns the text that is now safe to show ("" if none)."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(self._token_bytes(token_id))
        return self._release(final=False)

    def flush(self):
        """Returns what is left (incomplete bytes become U+FFFD) at the end."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, final):
        for stop in self.stop_strings:
            index = self._pending.find(stop)
            if index >= 0:
                self._pending = self._pending[:index]
                self.stopped = True
                final = True
        hold = 0
        if not final:
            for stop in self.stop_strings:
                for length in range(min(len(stop) - 1, len(self._pending)), 0, -1):
                    if self._pending.endswith(stop[:length]):
                        hold = max(hold, length)
                        break
        cut = len(self._pending) - hold
        piece, self._pending = self._pending[:cut], self._pending[cut:]
        self.text += piece
        return piece
