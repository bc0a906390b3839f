"""A long-running SDK user: loads NAME@ALIAS in a loop and prints each version it sees.

Usage: python _child_loader.py BACKEND_URI SIGNAL_PATH NAME ALIAS
Prints ``READY <version>`` after the first load, then ``<unix time> <version>``
whenever the version changes. Runs until killed.
"""

from __future__ import annotations

import sys
import time

import promptregistry


def main() -> None:
    """Configure the default client, then poll ``load`` every few milliseconds."""
    uri, signal_path, name, alias = sys.argv[1:5]
    promptregistry.configure(
        backend=uri, signal=promptregistry.FileChangeSignal(signal_path), ttl_s=30
    )
    seen = promptregistry.load(name, alias=alias).version
    print(f"READY {seen}", flush=True)
    while True:
        version = promptregistry.load(name, alias=alias).version
        if version != seen:
            seen = version
            print(f"{time.time():.6f} {version}", flush=True)
        time.sleep(0.002)


if __name__ == "__main__":
    main()
