"""The project's own small error hierarchy.

Every failure that can reach a user is one of these, with a message that is one or two plain
sentences: what went wrong and what to do. Vendor SDK exceptions and library errors are
converted at the adapter boundary; nothing above `adapters/` sees a vendor exception.
"""

from __future__ import annotations


class FMError(Exception):
    """Base class: `str(err)` is the sentence shown to the user."""


class BadInput(FMError, ValueError):
    """The user's input cannot be used (empty prompt, corrupt image, one label, ...)."""


class UnknownProvider(BadInput):
    """A provider name that the registry does not know, or that cannot serve the task."""


class MissingCredentials(FMError):
    """The provider needs a key that is not set; the message names the variable."""


class ProviderUnavailable(FMError):
    """The provider cannot run here: SDK not installed or model weights missing.

    The message says exactly how to fix it (which package, which command).
    """


class ProviderError(FMError):
    """The provider answered with an error (or could not be reached)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """The provider did not answer within the deadline."""

    def __init__(self, message: str, *, provider: str = ""):
        super().__init__(message, provider=provider, retryable=True)
