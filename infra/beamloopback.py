"""Beam's gRPC servers on loopback: the one listener Flink's options cannot move.

A process-mode Python worker talks to its TaskManager through Beam's gRPC servers (control, data,
state, logging, provisioning), which Beam's ServerFactory builds with NettyServerBuilder.forPort(port):
every interface, whatever Flink's bind-host options say, though it hands the worker a loopback address.
This module copies that one class out of flink-python, makes the builder bind the address it was
given (forAddress(socket), the loopback address Beam already chose), and puts the patched class in a
lib directory of its own, ahead of flink-python on the job JVM's classpath (FLINK_LIB_DIR,
infra/jobs.py). Nothing in the installed package changes.
"""
from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

from pushpipe.config import Settings

CLASS = "org/apache/beam/sdk/fn/server/ServerFactory$InetSocketAddressServerFactory.class"
FOR_ADDRESS = "(Ljava/net/SocketAddress;)L{builder};"
# slot sizes of constant pool entries by tag (Long and Double take two slots)
_SIZES = {1: None, 3: 4, 4: 4, 5: 8, 6: 8, 7: 2, 8: 2, 9: 4, 10: 4, 11: 4, 12: 4, 15: 3, 16: 2, 17: 4, 18: 4, 19: 2, 20: 2}
ALOAD_1, INVOKEVIRTUAL, INVOKESTATIC, NOP = 0x2B, 0xB6, 0xB8, 0x00


def pyflink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).parent


def lib_dir(settings: Settings) -> Path:
    """pyflink/lib's jars and the Prometheus metrics reporter (linked) plus the patched class's jar; built once
    per pyflink installation."""
    home = pyflink_home()
    # (+ the Prometheus reporter: a mini-cluster finds reporter factories on its classpath only, not in plugins/)
    installation = hashlib.sha1(f"{_flink_python_jar(home).resolve()}+prometheus".encode()).hexdigest()[:12]
    target = settings.cache_dir / "flink" / f"lib-loopback-{installation}"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for jar in [*(home / "lib").glob("*.jar"), *(home / "plugins" / "metrics-prometheus").glob("*.jar")]:
        link = target / jar.name
        link.unlink(missing_ok=True)
        link.symlink_to(jar)
    with zipfile.ZipFile(_flink_python_jar(home)) as source:
        patched = bind_given_address(source.read(CLASS))
    with zipfile.ZipFile(target / "beam-grpc-loopback.jar", "w") as out:
        out.writestr(CLASS, patched)
    (target / ".complete").write_text("ok\n")
    return target


def _flink_python_jar(home: Path) -> Path:
    return next((home / "opt").glob("flink-python*.jar"))


def bind_given_address(code: bytes) -> bytes:
    """The class with `NettyServerBuilder.forPort(socket.getPort())` turned into `forAddress(socket)`."""
    pool, end = _read_pool(code)
    for_port = next(i for i, e in pool.items() if e[0] == 10 and _member(pool, i)[1:] == ("forPort", _for_port_type(pool, i)))
    builder_class = pool[for_port][1]
    builder = pool[pool[builder_class][1]][1]
    count = struct.unpack_from(">H", code, 8)[0]
    name, descriptor, name_type, method = count, count + 1, count + 2, count + 3
    added = (_utf8("forAddress") + _utf8(FOR_ADDRESS.format(builder=builder))
             + struct.pack(">BHH", 12, name, descriptor) + struct.pack(">BHH", 10, builder_class, name_type))
    body = code[:8] + struct.pack(">H", count + 4) + code[10:end] + added + code[end:]
    # aload_1; invokevirtual InetSocketAddress.getPort; invokestatic forPort -> aload_1; nop x3; invokestatic forAddress
    call = bytes([INVOKESTATIC]) + struct.pack(">H", for_port)
    sites = [i for i in range(len(body) - 6) if body[i] == ALOAD_1 and body[i + 1] == INVOKEVIRTUAL and body[i + 4:i + 7] == call]
    if len(sites) != 1:
        raise RuntimeError(f"Beam's ServerFactory changed: {len(sites)} forPort call sites")
    at = sites[0]
    return body[:at + 1] + bytes([NOP] * 3) + bytes([INVOKESTATIC]) + struct.pack(">H", method) + body[at + 7:]


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">BH", 1, len(data)) + data


def _read_pool(code: bytes) -> tuple[dict[int, tuple], int]:
    """{index: (tag, *fields)} of the constant pool (Utf8 as (1, str)), and the offset where it ends."""
    count, at, index, pool = struct.unpack_from(">H", code, 8)[0], 10, 1, {}
    while index < count:
        tag = code[at]
        if tag == 1:
            length = struct.unpack_from(">H", code, at + 1)[0]
            pool[index] = (1, code[at + 3:at + 3 + length].decode("utf-8", "replace"))
            at += 3 + length
        else:
            size = _SIZES[tag]
            fields = struct.unpack_from(">HH", code, at + 1) if size == 4 and tag not in (3, 4) else (code[at + 1:at + 1 + size],)
            pool[index] = (tag, *fields) if tag not in (7, 8, 16, 19, 20) else (tag, struct.unpack_from(">H", code, at + 1)[0])
            at += 1 + size
        index += 2 if tag in (5, 6) else 1
    return pool, at


def _member(pool: dict[int, tuple], ref: int) -> tuple[int, str, str]:
    """(class index, name, descriptor) of a Fieldref/Methodref."""
    _, cls, name_type = pool[ref]
    _, name, descriptor = pool[name_type]
    return cls, pool[name][1], pool[descriptor][1]


def _for_port_type(pool: dict[int, tuple], ref: int) -> str:
    builder = pool[pool[pool[ref][1]][1]][1]
    return f"(I)L{builder};"
