"""A server's process tree, read from /proc: its CPU time, its memory, the work the kernel did for it (context
switches, page faults), and the addresses it listens on."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

# ---- the process tree: CPU, memory, listening sockets ------------------------------------------------------


def tree(root: int) -> list[int]:
    """The pid and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mib(root: int) -> float:
    kib = 0
    for pid in tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        kib += int(match.group(1)) if match else 0
    return kib / 1024


def kernel_work(root: int) -> tuple[int, int]:
    """Context switches (voluntary and not, every thread) and minor page faults of the tree so far: with the CPU
    time per request, they tell a server that did more work per request from a CPU that ran slower."""
    switches = faults = 0
    for pid in tree(root):
        try:
            faults += int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
            for status in Path(f"/proc/{pid}/task").glob("*/status"):
                switches += sum(int(n) for n in re.findall(r"^\w*ctxt_switches:\s+(\d+)$", status.read_text(), re.M))
        except (OSError, IndexError):
            continue
    return switches, faults


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds open (its /proc/<pid>/fd links `socket:[inode]`)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening_addresses(root: int) -> set[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """(address, port) of every TCP socket the process tree listens on, from /proc/net/tcp and tcp6."""
    inodes = set().union(*(socket_inodes(pid) for pid in tree(root)))
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # The kernel writes each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((ipaddress.ip_address(raw), int(port, 16)))
    return found


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
