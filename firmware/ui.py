"""The carrier's screen, buzzer and LED. Draws on the board display's framebuf (8x8 font) and maps
each outcome of the delivery flow to a distinct sound and light, so a carrier can tell success,
a question and an error apart without looking."""

import delivery
import record

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_CH = const(8)  # font cell
_VERDICT_TEXT = ("NO FIX", "INSIDE", "OUTSIDE", "UNSURE")

# prompt kind -> buzzer/LED pattern name (hal plays them)
SOUNDS = {
    delivery.P_READY: None,
    delivery.P_RECORDED: "ok",
    delivery.P_ASK: "override",
    delivery.P_REFUSED: "error",
    delivery.P_INVALID: "invalid",
    delivery.P_FULL: "error",
}


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

    def _line(self, row, text, inverse=False):
        fb = self.fb
        y = row * (_CH + 2) + 1
        if inverse:
            fb.fill_rect(0, y - 1, self.d.width, _CH + 2, 1)
        fb.text(text[: self.cols], 0, y, 0 if inverse else 1)

    def draw(self, status, prompt, next_stop_label, attempt_mode):
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
        self._line(3, "ATTEMPT MODE" if attempt_mode else "Next stop:")
        self._wrap(4, next_stop_label or "Route complete", 2)
        self._line(7, prompt.title, inverse=prompt.kind != delivery.P_READY)
        self._wrap(8, prompt.detail, 2)
        if prompt.verdict != record.V_NONE or prompt.kind == delivery.P_RECORDED:
            self._line(10, "%s %d.%dm" % (_VERDICT_TEXT[prompt.verdict], prompt.distance_dm // 10,
                                          prompt.distance_dm % 10))
        for i in range(len(prompt.choices)):
            mark = ">" if i == prompt.choice else " "
            self._line(11 + i, mark + prompt.choices[i][1])
        if status.space != "ok":
            self._line(15, "FLASH FULL: DOCK NOW" if status.space == "full" else "Flash low: dock soon",
                       inverse=True)
        self.d.show()

    def _wrap(self, row, text, rows):
        c = self.cols
        for i in range(rows):
            part = text[i * c: (i + 1) * c]
            if not part:
                break
            self._line(row + i, part)
