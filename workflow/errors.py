"""Named domain errors. Adapters turn them into exit codes (CLI) or 4xx pages (web)."""


class DomainError(Exception):
    """A request the domain refuses; the message is meant for the person who asked."""


class IllegalTransition(DomainError):
    def __init__(self, state, action):
        super().__init__(f"Aktion '{action}' ist im Zustand '{state}' nicht erlaubt.")
        self.state = state
        self.action = action


class NotFound(DomainError):
    pass


class InvalidInput(DomainError):
    """Bad input from a user; ``problems`` lists each problem (e.g. one per CSV line)."""

    def __init__(self, message, problems=()):
        super().__init__(message)
        self.problems = list(problems)

    def __str__(self):
        if not self.problems:
            return self.args[0]
        return "\n".join([self.args[0], *(f"  - {p}" for p in self.problems)])
