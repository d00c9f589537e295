#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) that keeps what it receives, for Postino's email tests and
benchmarks. Each accepted mail is written to DIR as <n>.eml (n = 1, 2, … in order of
receipt), with two headers added in front: `X-Received-At-Ms` (Unix milliseconds when it was
accepted) and `X-Envelope-To` (the envelope recipients). Failures on demand, by the recipient's local part:

  tempfail...@   every attempt answered 451 (a transient failure: retry later)
  reject...@     answered 550 (a permanent failure)
  flaky...@      the first attempt for that address answered 451, the next ones accepted

It prints `listening <host>:<port>` once ready (port 0 picks a free one), and counts what it
answered in DIR/answers.json on SIGTERM or SIGINT.

With --tls-cert and --tls-key it speaks TLS: `starttls` (offered and required before any
mail) or `implicit` (TLS from the first byte). With --auth USER:PASSWORD it requires AUTH
(PLAIN or LOGIN) before any mail.

Usage: smtp-sink.py DIR [--listen 127.0.0.1:0] [--tls-cert PEM --tls-key PEM
                        [--tls starttls|implicit]] [--auth USER:PASSWORD]
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time

import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Keep:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.seen_flaky = set()
        self.answers = {}

    def answered(self, code):
        self.answers[code] = self.answers.get(code, 0) + 1
        return code

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("tempfail"):
            self.answered("451")
            return "451 4.3.0 Temporarily unavailable, try again later"
        if local.startswith("reject"):
            self.answered("550")
            return "550 5.1.1 Mailbox unavailable"
        if local.startswith("flaky") and address not in self.seen_flaky:
            self.seen_flaky.add(address)
            self.answered("451")
            return "451 4.3.0 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.directory, f"{self.count}.eml")
        received_at_ms = int(time.time() * 1000)
        header = (
            f"X-Received-At-Ms: {received_at_ms}\r\n"
            + "X-Envelope-To: " + ", ".join(envelope.rcpt_tos) + "\r\n"
        )
        temporary = path + ".part"
        with open(temporary, "wb") as f:
            f.write(header.encode())
            f.write(envelope.original_content or envelope.content)
        os.replace(temporary, path)
        self.answered("250")
        return "250 Message accepted for delivery"


async def main():
    parser = argparse.ArgumentParser(description="An SMTP server that keeps what it receives.")
    parser.add_argument("dir")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls", choices=["starttls", "implicit"], default="starttls")
    parser.add_argument("--auth", help="USER:PASSWORD the client must log in with")
    args = parser.parse_args()
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    options = {}
    if context is not None and args.tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, data):
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == user
                and data.password.decode() == password
            )
            return AuthResult(success=ok, handled=False)

        options.update(
            authenticator=authenticator,
            auth_required=True,
            # Over implicit TLS aiosmtpd cannot tell the connection is encrypted.
            auth_require_tls=args.tls == "starttls" and context is not None,
        )
    host, port = args.listen.rsplit(":", 1)
    os.makedirs(args.dir, exist_ok=True)
    handler = Keep(args.dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler, hostname="smtp-sink.local", data_size_limit=10 * 1024 * 1024, **options
        ),
        host=host,
        port=int(port),
        ssl=context if args.tls == "implicit" else None,
    )
    bound = server.sockets[0].getsockname()
    print(f"listening {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    with open(os.path.join(args.dir, "answers.json"), "w") as f:
        json.dump(handler.answers, f)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ImportError as e:
        sys.exit(f"smtp-sink needs aiosmtpd (pip install aiosmtpd, or apt install python3-aiosmtpd): {e}")
