#!/bin/sh
# Roll out the mail relay configuration to the two MX hosts.
set -eu

HOSTS="mx1.example.net mx2.example.net"
VERSION="5.1.1"   # our config bundle version, not a status code

for h in $HOSTS; do
    echo "deploying bundle $VERSION to $h"
    scp main.cf "root@$h:/etc/postfix/main.cf"
    ssh "root@$h" 'postfix check && postfix reload'
done
echo "done: 550 5.7.1 rejections should stop within 10 minutes"
