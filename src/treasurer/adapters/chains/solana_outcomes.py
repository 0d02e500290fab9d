"""Turning LiteSVM's failure objects into short sentences a person can act on.

LiteSVM reports a failure as a Rust enum (``InstructionError(0, Custom(1))``) plus program
logs; neither alone says "insufficient funds". The message is built from the error kind and
the most telling log line, e.g. ``instruction 0 failed (custom error 1): Transfer: insufficient
lamports 8990000, need 100000000``.
"""

from __future__ import annotations

from typing import Final

from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import (
    InstructionErrorCustom,
    InstructionErrorFieldless,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
    TransactionErrorType,
)

#: Logs are program output: bound what is copied into an error message.
MAX_LOG_CHARS: Final = 200

#: What the runtime's terse names mean for a payment, where the name alone misleads.
_HINTS: Final = {
    "AccountNotFound": "the fee payer has no SOL (account not found)",
    "InsufficientFundsForFee": "the fee payer cannot cover the fee",
    "SignatureFailure": "a signature does not verify",
    "BlockhashNotFound": "the blockhash expired",
    "AlreadyProcessed": "this exact transaction was already processed",
}


def describe_error(error: TransactionErrorType) -> str:
    """One line saying what went wrong, in payment terms where the runtime name is terse."""
    if isinstance(error, TransactionErrorInstructionError):
        inner = error.err
        if isinstance(inner, InstructionErrorCustom):
            detail = f"custom error {inner.code}"
        elif isinstance(inner, InstructionErrorFieldless):
            detail = _enum_name(inner)
        else:
            detail = str(inner)
        return f"instruction {error.index} failed ({detail})"
    if isinstance(error, TransactionErrorInsufficientFundsForRent):
        return (
            "insufficient funds for rent: an account would be left below its rent-exempt "
            f"minimum (account index {error.account_index})"
        )
    if isinstance(error, TransactionErrorFieldless):
        name = _enum_name(error)
        return _HINTS.get(name, name)
    return str(error)


def describe_failure(failed: FailedTransactionMetadata) -> str:
    """The error and, when a program explained itself in its logs, that explanation."""
    text = describe_error(failed.err())
    reason = _telling_log_line(failed.meta().logs())
    return f"{text}: {reason}" if reason else text


def is_landing_error(error: TransactionErrorType) -> bool:
    """True when the chain refused the transaction before running it (nothing was charged).

    Instruction and rent failures happen *during* execution: the fee is taken and the
    transaction lands as failed. Everything else (unknown fee payer, fee not covered, bad
    signature, stale blockhash, duplicate) means it never landed.
    """
    return not isinstance(
        error, TransactionErrorInstructionError | TransactionErrorInsufficientFundsForRent
    )


def _enum_name(value: object) -> str:
    # str() of a solders fieldless enum is "TypeName.Variant"; the variant is the meaning.
    return str(value).rsplit(".", 1)[-1]


def _telling_log_line(logs: list[str]) -> str | None:
    """The last line a program wrote about the failure, not the runtime's invoke/success lines."""
    for line in reversed(logs):
        if line.startswith("Program log: Error") or not line.startswith("Program "):
            return line.removeprefix("Program log: ")[:MAX_LOG_CHARS]
    return None
