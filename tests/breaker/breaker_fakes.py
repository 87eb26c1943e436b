"""Provider errors as the breaker sees them (status, Retry-After), shared by the breaker tests."""

from __future__ import annotations


class HTTPError(Exception):
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(f"http {status}")
        self.status_code = status
        self.headers = {"retry-after": retry_after} if retry_after is not None else {}
        self.response = self
