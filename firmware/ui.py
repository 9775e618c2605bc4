"""The carrier's screen, buzzer and LED. Draws on the board display's framebuf (8x8 font) and maps
each outcome of the delivery flow to a distinct sound and light, so a carrier can tell success,
a question and an error apart without looking."""

from firmware import delivery, record

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_CH = const(8)  # font cell; a text row is 10 px
_VERDICT_TEXT = ("NO FIX", "INSIDE", "OUTSIDE", "UNSURE")

# prompt kind (delivery.P_*, 0-6) -> buzzer/LED pattern name (hal plays them); a constant tuple,
# where a dict would be built in RAM at import
SOUNDS = (
    None,  # P_READY
    "ok",  # P_RECORDED
    "override",  # P_ASK
    "error",  # P_REFUSED
    "invalid",  # P_INVALID
    "error",  # P_FULL
    "error",  # P_BUSY: the refusal tone: this scan is not recorded, the question stays
)


class Status:
    """Everything the status lines show; the app's tasks update it in place."""

    def __init__(self):
        self.gnss = "NO FIX"
        self.pending = 0
        self.last_upload = ""  # HH:MM of the last acknowledged upload
        self.battery_pct = -1
        self.docked = False
        self.space = "ok"
        self.fault = ""


class Screen:
    def __init__(self, display):
        self.d = display
        self.fb = display.fb
        self.cols = display.width // _CH
        self.rows = display.height // (_CH + 2)

    def _line(self, row, text, inverse=False):
        fb = self.fb
        y = row * (_CH + 2) + 1
        if inverse:
            fb.fill_rect(0, y - 1, self.d.width, _CH + 2, 1)
        fb.text(text[: self.cols], 0, y, 0 if inverse else 1)

    def draw(self, status, prompt, next_stop_label, attempt_mode):
        """next_stop_label: the next stop's "#seq address", "" when every stop is done, None when
        no route is loaded (the prompt then takes the next stop's place)."""
        fb = self.fb
        fb.fill(0)
        bat = "" if status.battery_pct < 0 else " %d%%" % status.battery_pct
        self._line(0, "%s Q%d%s" % (status.gnss, status.pending, bat), inverse=True)
        self._line(1, ("DOCKED " if status.docked else "") + ("up " + status.last_upload
                                                              if status.last_upload else "no upload yet"))
        if status.fault:
            self._line(3, "FAULT", inverse=True)
            self._wrap(4, status.fault, 6)
            self.d.show()
            return
        row = 3
        if next_stop_label is not None:
            self._line(3, "ATTEMPT MODE" if attempt_mode else "Next stop:")
            self._wrap(4, next_stop_label or "Route complete", 2)
            row = 7
        self._line(row, prompt.title, inverse=prompt.kind != delivery.P_READY)
        row += 1 + self._wrap(row + 1, prompt.detail, 2 if prompt.choices else 3)
        if prompt.notice:  # a refused scan under an open question
            self._line(row, prompt.notice, inverse=True)
            row += 1
        elif prompt.verdict != record.V_NONE or prompt.kind == delivery.P_RECORDED:
            self._line(row, "%s %d.%dm" % (_VERDICT_TEXT[prompt.verdict], prompt.distance_dm // 10,
                                           prompt.distance_dm % 10))
            row += 1
        last = self.rows - (2 if status.space != "ok" else 1)  # the flash warning keeps the bottom row
        n = len(prompt.choices)
        shown = last - row + 1
        first = 0 if n <= shown else min(max(0, prompt.choice - shown // 2), n - shown)
        for i in range(first, min(n, first + shown)):  # a window that keeps the choice in view
            label = wrap(prompt.choices[i][1], self.cols - 1, 1)  # one row, cut between words
            self._line(row, (">" if i == prompt.choice else " ") + (label[0] if label else ""))
            row += 1
        if status.space != "ok":
            warn = "FLASH FULL: DOCK NOW" if status.space == "full" else "Flash low: dock soon"
            self._line(self.rows - 1, warn, inverse=True)
        self.d.show()

    def _wrap(self, row, text, rows):
        """Text over at most `rows` rows, broken between words; returns the rows used."""
        lines = wrap(text, self.cols, rows)
        for i in range(len(lines)):
            self._line(row + i, lines[i])
        return len(lines)


def wrap(text, cols, rows):
    """Up to `rows` lines of at most `cols` characters, broken at spaces; a word longer than a line
    breaks after a "/" or "-" in it, else at the line's end. Text that does not fit ends in "~"."""
    lines = []
    i = 0
    n = len(text)
    while i < n and len(lines) < rows:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            break
        if n - i <= cols:
            lines.append(text[i:])
            i = n
            break
        cut = text.rfind(" ", i, i + cols + 1)
        if cut <= i:  # one long word (a path, an id): break after a separator in it if there is one
            cut = max(text.rfind("/", i, i + cols), text.rfind("-", i, i + cols)) + 1
            if cut <= i:
                cut = i + cols
        lines.append(text[i:cut].rstrip())
        i = cut
    if i < n and text[i:].strip() and lines:  # more than fits: say so, still in whole words
        last = lines[-1]
        if len(last) >= cols:
            k = last.rfind(" ")
            last = last[:k] if k > 0 else last[: cols - 1]
        lines[-1] = last + "~"
    return lines
