"""Business rules and transactions: the only layer that decides."""


def like_pattern(term: str) -> str:
    """A LIKE pattern (escape character backslash) matching `term` anywhere, with its own
    % and _ taken literally."""
    return "%" + term.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
