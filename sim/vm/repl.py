"""The virtual handheld's console REPL, as a board's pyexec.c serves it, in MicroPython.

Written here rather than borrowed from the unix port, whose REPL cannot soft-reset (Ctrl-D exits
the process) and ignores Ctrl-C bytes. Kept byte-exact with pyexec.c where mpremote listens: raw
REPL (Ctrl-A), raw-paste with its flow-control window, Ctrl-B, Ctrl-C, Ctrl-D soft reboot. The
friendly REPL behaves as a board's for a person at a terminal: auto-indent after a colon (Backspace
takes one level off, Return on an empty line runs the block), paste mode (Ctrl-E), and tracebacks
that start at `<stdin>`: the simulator's own frames stand where a board has C, so none is shown.
The device process turns the VM's bare LF into CR LF, as a board's console driver does.

State goes to the device process through the SIM_STATE FIFO (`open_state`): b"R" user code runs
(a console Ctrl-C then becomes SIGINT), b"I" idle in the REPL (Ctrl-C is a byte), b"X" leaving.
"""

import io
import sys

RAW = 4  # exit status: soft reboot into the raw REPL (main.py skipped)
FRIENDLY = 3  # exit status: soft reboot into the friendly REPL (main.py runs)
BANNER = b'MicroPython (unix port) on sim; virtual handheld\r\nType "help()" for more information.\r\n'
_INDENT = 4  # spaces per auto-indent level, as a board's readline
_HERE = __file__.rsplit("/", 1)[0] + "/"  # sim/vm/: frames from here are a board's C

_out = sys.stdout.buffer
_in = sys.stdin.buffer
_state = None
_one = bytearray(1)


def w(b):
    _out.write(b)


def open_state(path):
    global _state
    _state = open(path, "wb")


def state(code):
    if _state is not None:
        try:
            _state.write(code)
        except OSError:
            pass


def print_exc(e):
    """The traceback as a board prints it: from the user's code down, without the simulator."""
    buf = io.StringIO()
    sys.print_exception(e, buf)  # type: ignore[attr-defined]
    for line in buf.getvalue().split("\n"):  # type: ignore  # MicroPython StringIO has it
        if line and _HERE not in line:
            w(line.encode() + b"\n")


def execute(src, ns, raw, filename="<stdin>", single=False):
    try:
        try:
            state(b"R")  # inside the try: the Ctrl-C it invites may strike before it returns
            if not isinstance(src, str):
                src = bytes(src).decode()
            code = compile(src, filename, "single" if single else "exec")
            exec(code, ns)
        except SystemExit:
            pass
        except BaseException as e:  # KeyboardInterrupt too: Ctrl-C stops user code, not the REPL
            if raw:
                w(b"\x04")
            print_exc(e)
            if raw:
                w(b"\x04")
            return False
        if raw:
            w(b"\x04\x04")
        return True
    finally:
        state(b"I")


def getc():
    while True:
        try:
            n = _in.readinto(_one)  # type: ignore[attr-defined]
        except KeyboardInterrupt:
            return 3  # a Ctrl-C that arrived as SIGINT just as we went idle
        if not n:
            state(b"X")
            sys.exit(0)
        return _one[0]


def soft_reboot(mode, dev):
    state(b"X")
    dev.close()
    w(b"MPY: soft reboot\r\n")
    sys.exit(mode)


def raw_paste(ns):
    window = 256
    w(b"R\x01")
    w(bytes((window & 255, window >> 8, 1)))
    remain = window
    src = bytearray()
    while True:
        c = getc()
        if c == 3 or c == 4:
            w(b"\x04")
            if c == 3:
                w(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04")
                return
            break
        src.append(c)
        remain -= 1
        if remain == 0:
            w(b"\x01")
            remain = window
    execute(src, ns, True)


def raw_repl(ns, dev):
    w(b"raw REPL; CTRL-B to exit\r\n")
    while True:
        w(b">")
        line = bytearray()
        while True:
            c = getc()
            if c == 1:
                if len(line) == 2 and line[0] == 5:
                    if line[1] == 65:  # "A"
                        raw_paste(ns)
                    else:
                        w(b"R\x00")
                    line = None
                    break
                return RAW  # Ctrl-A again: reset the raw REPL
            if c == 2:
                w(b"\r\n")
                return FRIENDLY
            if c == 3:
                line = bytearray()
            elif c == 4:
                break
            else:
                line.append(c)
        if line is None:
            continue
        w(b"OK")
        if not line:
            w(b"\r\n")
            soft_reboot(RAW, dev)
        execute(line, ns, True)


def readline(prompt, indent=""):
    """Line editor: returns (control char or 0, text). `indent` is typed in for the user (auto-
    indent); Backspace over nothing but spaces takes off a whole level."""
    w(prompt)
    line = bytearray(indent.encode())
    w(line)
    while True:
        c = getc()
        if c == 13:
            w(b"\r\n")
            return 0, bytes(line).decode()
        if c in (1, 2, 3, 5) or (c == 4 and not line):
            return c, ""
        if c == 4:
            w(b"\r\n")
            return 4, bytes(line).decode()  # ends a compound statement, as on a board
        if c in (8, 127):
            n = 1
            if line and not bytes(line).strip():
                n = (len(line) - 1) % _INDENT + 1
            n = min(n, len(line))
            line = line[: len(line) - n]  # bytearray has no pop() on the port
            w(b"\x08 \x08" * n)
        elif c >= 32 or c == 9:
            line.append(c)
            _one[0] = c
            w(_one)


def _open(src):
    """Whether `src` is unfinished: brackets or a triple-quoted string still open, a line ending
    in a backslash."""
    depth = 0
    for ch in src:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth > 0 or src.count('"""') % 2 == 1 or src.count("'''") % 2 == 1 or src.endswith("\\")


def _compound(line):
    s = line.strip()
    return s.endswith(":") or s.startswith("@")


def _auto_indent(lines):
    """The indentation a board's readline types in for the next line of a block."""
    last = lines[-1]
    if not last.strip():
        if len(lines) > 1 and not lines[-2].strip():
            return ""  # two blank lines: the block is over
        return last
    spaces = len(last) - len(last.lstrip(" "))
    return " " * (spaces + (_INDENT if last.rstrip().endswith(":") else 0))


def _more(text):
    """Continuation lines after `text` (the first line); None when cancelled with Ctrl-C."""
    lines = [text]
    compound = _compound(text)
    while compound or _open("\n".join(lines)):
        c, line = readline(b"... ", _auto_indent(lines) if compound else "")
        if c == 3:
            w(b"\r\n")
            return None
        if c == 4 or (compound and not line):
            break
        lines.append(line)
        compound = compound or _compound(line)
    return "\n".join(lines) + "\n"


def paste_mode(ns):
    w(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    src = bytearray()
    while True:
        k = getc()
        if k == 3:
            w(b"\r\n")
            return
        if k == 4:
            w(b"\r\n")
            break
        src.append(k)
        if k == 13:
            w(b"\r\n=== ")
        elif k != 10:  # a terminal's CR LF: the CR already started the new line
            _one[0] = k
            w(_one)
    if src:
        execute(src, ns, False)


def friendly_repl(ns, dev):
    w(BANNER)
    while True:
        c, text = readline(b">>> ")
        if c == 1:
            w(b"\r\n")
            return RAW
        if c == 2:
            w(b"\r\n" + BANNER)
        elif c == 3:
            w(b"\r\n")
        elif c == 4:
            w(b"\r\n")
            soft_reboot(FRIENDLY, dev)
        elif c == 5:
            paste_mode(ns)
        elif text.strip():
            if _compound(text) or _open(text):
                src = _more(text)
                if src is not None:
                    execute(src, ns, False)
            else:
                execute(text, ns, False, "<stdin>", True)
