"""Corpus validation with Great Expectations: the ``validate_corpus`` stage (see docs/validation.md)."""

from regionmed.validation.result import CheckResult, ValidationResult
from regionmed.validation.validate import validate_corpus

__all__ = ["CheckResult", "ValidationResult", "validate_corpus"]
