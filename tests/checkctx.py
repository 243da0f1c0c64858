"""A stand-in context for unit tests of check logic (DNS answers are real
dnspython rdata; nothing of dnspython is mocked).  Lab tests cover the real one."""

from deliverck.context import Context


class FakeCtx:
    """Just enough of deliverck.context.CheckContext for the dkim and dmarc checks.

    It answers the primitive facts (dns, mx, mail_addresses, spf) from data and
    borrows the real Context's derived facts, which ask only those."""

    mail_domain = Context.mail_domain
    dkim_keys = Context.dkim_keys

    def __init__(self, domain, answers, selectors=(), sender="", addresses=(), spf=None):
        import types
        self.config = types.SimpleNamespace(dkim_selectors=tuple(selectors), sender=sender, helo_name="")
        self.target = types.SimpleNamespace(is_ip=False, name=domain, label=domain)
        self.answers = answers
        self.asked = []
        self._facts = {}
        self._addresses = addresses
        self._spf = spf or {}

    async def mx(self):
        return None

    async def dns(self, name, rdtype):
        from deliverck.net.dns import DnsAnswer, Outcome
        self.asked.append((name, rdtype))
        a = self.answers.get(name)
        if a is None:
            return DnsAnswer(name, rdtype, Outcome.NXDOMAIN)
        return a

    async def fact(self, key, compute):
        if key not in self._facts:
            self._facts[key] = await compute()
        return self._facts[key]

    async def mail_addresses(self):
        return self._addresses

    async def spf(self, ip, domain, sender="", helo=""):
        import types
        return types.SimpleNamespace(result=self._spf.get(ip, "none"))


def txt(name, *texts, outcome="ok", cname=""):
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    from deliverck.net.dns import DnsAnswer, Outcome
    recs = tuple(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT,
                                     " ".join(f'"{t[i:i + 255]}"' for i in range(0, len(t), 255)))
                 for t in texts)
    return DnsAnswer(name, "TXT", Outcome(outcome), recs if outcome == "ok" else (), canonical_name=cname)
