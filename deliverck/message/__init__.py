"""Judging a real message: `deliverck message` (.eml, mbox, directory, stdin) and `deliverck listen`
(receive one from the user's own server).  See docs/message.md.

    model.py        the data: a message, its envelope (each part a claim with its source), the session
    source.py       reading files, directories, mboxes and stdin into Message objects (bounded)
    headers.py      header fields, addresses, Received hops, the envelope a message claims
    auth.py         DKIM and ARC (dkimpy, keys through deliverck's DNS), SPF, DMARC (RFC 7489 and
                    DMARCbis), Authentication-Results (authres): computed once per message
    checks/         the message checks (CHECK + run(mctx)), discovered like deliverck.checks
    context.py      MessageContext: what a message check sees
    runner.py       one message -> one Report (message checks, plus ptr/dnsbl/helo for the sending address)
    listen.py       the one-message SMTP receiver (aiosmtpd)
"""
