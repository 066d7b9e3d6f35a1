#!/usr/bin/env python3
"""Pre-signs COUNT requests for the load harness's signed key (Latchkey's request-signature scheme).

usage: sign_requests.py SECRET COUNT METHOD PATH_WITH_QUERY > lines
Each line: "<timestamp> <nonce> <hex signature>" for an empty body, timestamp = now.
The string to sign is "{ts}\\n{nonce}\\n{METHOD}\\n{path_with_query}\\n{hex sha256(body)}".
"""
import hashlib, hmac, sys, time, os

secret, count, method, path = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3].upper(), sys.argv[4]
ts = str(int(time.time()))
body_hash = hashlib.sha256(b"").hexdigest()
prefix = os.urandom(6).hex()
out = sys.stdout
for i in range(count):
    nonce = f"b{prefix}{i:x}"
    msg = f"{ts}\n{nonce}\n{method}\n{path}\n{body_hash}".encode()
    out.write(f"{ts} {nonce} {hmac.new(secret, msg, hashlib.sha256).hexdigest()}\n")
