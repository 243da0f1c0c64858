"""SPF (RFC 7208): parser, check_host() evaluator with trace, and linter."""

from deliverck.spf.evaluator import LOOKUP_LIMIT, VOID_LIMIT, Lookup, SpfResult, check_host
from deliverck.spf.record import (
    MacroExpand, MacroString, Mechanism, Modifier, ParseError, SpfRecord, is_spf_record,
    parse_macro_string, parse_record,
)
from deliverck.spf.trace import DomainTrace, LookupTrace, TermTrace

__all__ = [
    "LOOKUP_LIMIT", "VOID_LIMIT", "Lookup", "SpfResult", "check_host", "MacroExpand", "MacroString",
    "Mechanism", "Modifier", "ParseError", "SpfRecord", "is_spf_record", "parse_macro_string",
    "parse_record", "DomainTrace", "LookupTrace", "TermTrace",
]
