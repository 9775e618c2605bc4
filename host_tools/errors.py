"""The depot's one error type for a user's mistake or a situation the user can fix.

Raise `DepotError(what, fix)` anywhere below the CLI; `cli.main` catches it once, flushes stdout and
prints one line on stderr, `depot: error: WHAT. FIX`, then exits 2. Never a traceback for a user's
mistake: programming errors are the only tracebacks left.
"""


class DepotError(Exception):
    exit_code = 2

    def __init__(self, what: str, fix: str = ""):
        super().__init__(what)
        self.what = what.rstrip(".")
        self.fix = fix.rstrip(".")

    def line(self) -> str:
        fix = self.fix[:1].upper() + self.fix[1:]  # a sentence of its own
        if not fix:
            return f"{self.what}."
        return f"{self.what}. {fix}" + ("" if fix.endswith("?") else ".")
