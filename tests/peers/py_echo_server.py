"""A python3-websockets echo server (Debian's package), permessage-deflate on.

Prints "listening on PORT" once ready; echoes every message; runs until killed.
"""
import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, compression="deflate",
                                subprotocols=["py.echo"]) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
