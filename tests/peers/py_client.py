"""A python3-websockets client: connects to URL, checks what was negotiated, echoes
messages of every length class and closes cleanly. Prints one line per check; exits 1
on the first failure. For wss:// URLs, --cafile FILE names the only trusted certificate.
"""
import argparse
import asyncio
import ssl
import sys

import websockets


async def main(url, cafile):
    tls = ssl.create_default_context(cafile=cafile) if url.startswith("wss:") else None
    async with websockets.connect(url, compression="deflate", subprotocols=["py.echo"],
                                  max_size=None, ssl=tls) as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        print(f"extensions: {ext}")
        print(f"subprotocol: {ws.subprotocol}")
        if "permessage-deflate" not in ext:
            print("FAIL: permessage-deflate was not negotiated")
            return 1
        for size in (0, 125, 126, 65535, 65536, 1 << 20):
            text = ("wsdrain " * (size // 8 + 1))[:size]
            await ws.send(text)
            if await ws.recv() != text:
                print(f"FAIL: text of {size} bytes came back different")
                return 1
            data = bytes(range(256)) * (size // 256) + bytes(size % 256)
            await ws.send(data)
            if await ws.recv() != data:
                print(f"FAIL: binary of {size} bytes came back different")
                return 1
        print("echo: ok")
    print(f"close: {ws.close_code}")
    return 0 if ws.close_code == 1000 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--cafile")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.cafile)))
