"""One exception type for every mistake a user can make.

The core raises `UserError`; the CLI catches it once, prints the message and
exits 2. Nothing else in the package prints.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: names where the problem is and how to fix it."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        self.message, self.where, self.fix = message, where, fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}; {self.fix}" if self.fix else text

    def at(self, where: str) -> "UserError":
        """The same error, placed (a file name in front of a field name)."""
        inner = f"{where}: {self.where}" if self.where else where
        return UserError(self.message, where=inner, fix=self.fix)
