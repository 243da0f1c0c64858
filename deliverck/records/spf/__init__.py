"""SPF (RFC 7208): parser, check_host() evaluator with trace, linter and blame.

The evaluator asks its questions through a `Lookup` it is handed (the
Context's DNS client in an audit, net.memdns in tests and benchmarks), so the
whole of RFC 7208's logic is here and no resolver is: that is why it counts
as a record evaluator rather than network code.  The `deliverck spf` command
that drives it is a front end (deliverck/cli/spf.py, cli/spf_eval.py).
"""

from deliverck.records.spf.evaluator import (
    LOOKUP_LIMIT,
    VOID_LIMIT,
    Lookup,
    SpfResult,
    check_host,
)
from deliverck.records.spf.record import (
    MacroExpand,
    MacroString,
    Mechanism,
    Modifier,
    ParseError,
    SpfRecord,
    is_spf_record,
    parse_macro_string,
    parse_record,
)
from deliverck.records.spf.trace import DomainTrace, LookupTrace, TermTrace

__all__ = [
    "LOOKUP_LIMIT", "VOID_LIMIT", "Lookup", "SpfResult", "check_host", "MacroExpand", "MacroString",
    "Mechanism", "Modifier", "ParseError", "SpfRecord", "is_spf_record", "parse_macro_string",
    "parse_record", "DomainTrace", "LookupTrace", "TermTrace",
]
