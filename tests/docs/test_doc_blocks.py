"""Every ``bash`` / ``python`` block of README.md and docs/*.md runs as written, or is marked
``<!-- skip: REASON -->`` (see :mod:`doc_blocks` and docs/architecture.md).

Blocks run on the cached ``tiny`` organism with training capped at a few steps (see
``block_server.py``), each page in its own temporary working directory holding a link to the
repository's ``recipes/``; the test checks that they run, not the numbers they print.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs.doc_blocks import ROOT, doc_pages, extract_blocks

PAGE_TIMEOUT_S = 600
SHIM = """#!{python} -S
# `isaerft` for the doc blocks: hands the command to the block server, which has the imports done.
import json, os, socket, sys
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.connect({socket_path!r})
socket.send_fds(client, [b"x"], [0, 1, 2])
request = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
client.sendall((json.dumps(request) + "\\n").encode())
reply = client.makefile("rb").readline()
sys.exit(json.loads(reply)["rc"] if reply else 1)
"""

PAGES = {
    str(page.relative_to(ROOT)): blocks for page in doc_pages() if (blocks := extract_blocks(page))
}


def test_skipped_blocks_say_why() -> None:
    for blocks in PAGES.values():
        for block in blocks:
            assert block.skip is None or len(block.skip) > 5, block.where


def test_blocks_are_found_and_marks_read(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nisaerft --help\n```\n\n<!-- skip: needs a GPU -->\n"
        "```python\nimport torch\n```\n\n```text\nnot code\n```\n\n"
        "* item\n\n    ```bash\n    echo indented\n    ```\n"
    )
    page = page.rename(ROOT / "tests" / "docs" / "_tmp_page.md")
    try:
        blocks = extract_blocks(page)
    finally:
        page.unlink()
    assert [(b.lang, b.skip, b.code) for b in blocks] == [
        ("bash", None, "isaerft --help"),
        ("python", "needs a GPU", "import torch"),
        ("bash", None, "echo indented"),
    ]


@pytest.fixture(scope="module")
def block_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The server's shim folder (put it first on PATH); the server lives for this module."""
    folder = tmp_path_factory.mktemp("block-server")
    socket_path = folder / "server.sock"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("block_server.py")), str(socket_path)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready", "the block server did not start"
        shim = folder / "bin" / "isaerft"
        shim.parent.mkdir()
        shim.write_text(SHIM.format(python=sys.executable, socket_path=str(socket_path)))
        shim.chmod(0o755)
        yield shim.parent
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_blocks_run(page: str, block_server: Path, tmp_path: Path) -> None:
    blocks = [vars(b) for b in PAGES[page] if b.skip is None]
    if not blocks:
        pytest.skip(f"every block of {page} is marked skip")
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipes").symlink_to(ROOT / "recipes")
    env = {
        **os.environ,
        "PATH": f"{block_server}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    log = tmp_path / "blocks.log"
    with log.open("w") as out, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(PAGE_TIMEOUT_S)
        client.connect(str(block_server.parent / "server.sock"))
        socket.send_fds(
            client, [b"x"], [os.open(os.devnull, os.O_RDONLY), out.fileno(), out.fileno()]
        )
        request = {"page": blocks, "cwd": str(work), "env": env}
        client.sendall((json.dumps(request) + "\n").encode())
        reply = json.loads(client.makefile("rb").readline() or b'{"rc": 1, "failed": "?"}')
    if reply["rc"] != 0:
        output = log.read_text(errors="replace")
        pytest.fail(f"block {reply.get('failed')} failed; its output:\n{output[-6000:]}")
