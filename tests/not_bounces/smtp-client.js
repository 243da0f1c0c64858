// Tiny SMTP status helper used by the web console.
'use strict';

const STATUS_TEXT = {
  '2.0.0': 'accepted',
  '4.2.2': 'mailbox over quota, will retry',
  '5.1.1': 'address does not exist',
  '5.7.26': 'rejected: the message failed authentication (SPF/DKIM/DMARC)',
};

function describe(reply) {
  const m = /^(\d{3})[ -](\d\.\d{1,3}\.\d{1,3})?/.exec(reply);
  if (!m) {
    return 'unparsed reply';
  }
  const code = Number(m[1]);
  const status = m[2] || '';
  return `${code} ${STATUS_TEXT[status] || 'see the server documentation'}`;
}

export function summarise(replies) {
  return replies.map(describe).join('\n');
}

module.exports = { describe, summarise };
