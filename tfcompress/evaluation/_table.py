"""Plain-text tables and number formatting shared by the reports."""

import math


def format_table(headers, rows):
    """Aligns `rows` (lists of strings) under `headers`: first column left, rest right."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells):
        parts = [cells[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule] + [line(row) for row in rows])


def format_bytes(value):
    """`1234567` -> `"1.23 MB"` (decimal units, as TFLite tooling reports)."""
    if value is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{int(value)} B"


def format_number(value, digits=4):
    """Fixed digits for values near 1, scientific notation for tiny or huge ones."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e6):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def format_ms(value):
    return "-" if value is None else f"{value:.3f}"


def format_ratio(value):
    return "-" if value is None else f"{value:.2f}x"
