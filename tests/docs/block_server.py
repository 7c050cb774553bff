"""Runs documentation blocks fast: one process imports isaerft (torch, Lightning) once and forks
a child per ``isaerft`` command and per page, instead of paying ~10 s of imports per command.

Usage: ``python block_server.py SOCKET``. A request is one marker byte carrying the client's
stdin/stdout/stderr (``socket.send_fds``), then one JSON line:

* ``{"argv": [...], "cwd": ..., "env": {...}}``: run ``isaerft ARGV`` (what the ``isaerft``
  shim on the blocks' PATH sends); the reply is ``{"rc": N}``.
* ``{"page": [block, ...], "cwd": ..., "env": {...}}``: run a page's blocks in order, python
  blocks in one namespace, bash blocks with ``bash -euo pipefail``; the reply is
  ``{"rc": 0}`` or ``{"rc": 1, "failed": "page:line"}``.

Docs are written for the ``small`` organism and full-length training; here every organism
build is the cached ``tiny`` one and every Lightning run stops after :data:`MAX_STEPS` steps, by
patching the two public entry points (``build_organism``, ``pytorch_lightning.Trainer``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import traceback
from typing import Any

MAX_STEPS = int(os.environ.get("ISAERFT_DOC_MAX_STEPS", "4"))


def _patch() -> None:
    import pytorch_lightning

    import isaerft.cli
    import isaerft.organism
    import isaerft.training

    original_build = isaerft.organism.build_organism

    def build_tiny(preset: Any = "tiny", *args: Any, **kwargs: Any) -> Any:
        return original_build("tiny" if preset == "small" else preset, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("isaerft") and getattr(module, "build_organism", None) is original_build:
            module.build_organism = build_tiny  # type: ignore[attr-defined]

    original_init = pytorch_lightning.Trainer.__init__

    def capped_init(self: Any, *args: Any, **kwargs: Any) -> None:
        steps = kwargs.get("max_steps", -1)
        kwargs["max_steps"] = MAX_STEPS if steps is None or steps < 0 else min(steps, MAX_STEPS)
        original_init(self, *args, **kwargs)

    pytorch_lightning.Trainer.__init__ = capped_init  # type: ignore[method-assign]


def _run_cli(argv: list[str]) -> int:
    from isaerft.cli import main

    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1


def _run_page(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in blocks:
        where = f"{block['page']}:{block['line']}"
        print(f"\n===== {where} ({block['lang']})\n{block['code']}\n-----", flush=True)
        try:
            if block["lang"] == "python":
                exec(compile(block["code"], where, "exec"), namespace)
                rc = 0
            else:
                rc = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]]).returncode
        except BaseException:
            traceback.print_exc()
            rc = 1
        sys.stdout.flush()
        sys.stderr.flush()
        if rc != 0:
            return {"rc": 1, "failed": where}
    return {"rc": 0}


def _serve_one(conn: socket.socket) -> None:
    """In a forked child: take over the client's stdio, run the request, reply, exit."""
    _, fds, _, _ = socket.recv_fds(conn, 1, 3)  # one marker byte carries the three fds
    request = json.loads(conn.makefile("rb").readline().decode())
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
    sys.stdout = os.fdopen(1, "w", closefd=False)
    sys.stderr = os.fdopen(2, "w", closefd=False)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if "argv" in request:
        reply: dict[str, Any] = {"rc": _run_cli(request["argv"])}
    else:
        reply = _run_page(request["page"])
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall((json.dumps(reply) + "\n").encode())


def main(path: str) -> None:
    _patch()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            code = 1
            try:
                _serve_one(conn)
                code = 0
            finally:
                os._exit(code)
        conn.close()
        while True:  # reap finished children without blocking
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


if __name__ == "__main__":
    main(sys.argv[1])
