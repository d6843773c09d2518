"""A python3-websockets echo server (Debian's package), permessage-deflate on.

Prints "listening on PORT" once ready; echoes every message; runs until killed.
With --cert FILE --key FILE it speaks TLS (wss://).
"""
import argparse
import asyncio
import ssl
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main(cert, key):
    tls = None
    if cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
    async with websockets.serve(echo, "127.0.0.1", 0, compression="deflate",
                                subprotocols=["py.echo"], ssl=tls) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.cert, args.key)))
