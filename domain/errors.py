"""Domain errors carrying a stable machine-readable code and an HTTP status."""


class DomainError(Exception):
    """A business-rule violation; `code` is stable and safe to show to API clients."""

    def __init__(self, code: str, message: str, http_status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"DomainError({self.code!r}, {self.message!r}, {self.http_status!r})"

    def __reduce__(self) -> tuple[type["DomainError"], tuple[str, str, int]]:
        # Default Exception pickling replays only `args` (the message), which would
        # break the three-argument constructor when errors cross process boundaries.
        return (type(self), (self.code, self.message, self.http_status))
