"""Sender authentication records: DKIM key records and DMARC policy records.

Pure parsers, no network: the checks (checks/dkim.py, checks/dmarc.py) fetch
the TXT records and hand the text here.  Every parser raises only its own
error type (a subclass of `TagListError`) for bad input.
"""
