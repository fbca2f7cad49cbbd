"""A sidecar of a container task: its admin API on the host, its listeners in the task's network namespace.

The daemon reaches every proxy's admin API on the host's 127.0.0.1, whatever runtime the task has. A
sidecar of a container task therefore binds its admin socket first, then moves its (only) thread into
the task's network namespace (``setns``), binds its listeners there, and gives up root for the user the
task's proxy configuration ignores (``IgnoredUID``, 1337), so its own outbound connections are not
redirected back to itself. Sockets keep the namespace they were made in: the admin socket stays on the
host, every later socket (listeners, connections to other tasks and to the app) is in the task.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

CLONE_NEWNET = 0x40000000


def enter_network_namespace(path: str) -> None:
    """Move the calling thread into the network namespace at ``path`` (``/proc/PID/ns/net``)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot enter the network namespace {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


PR_SET_KEEPCAPS = 8
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def become(uid: int) -> None:
    """Drop root for ``uid`` (same group id), for good, keeping one capability: reading files.

    The proxy's own code is still imported as it runs, and it may live where only root can look (a
    Python under /root); every other power of root is gone, and the kernel sees ``uid`` as the owner of
    every socket the proxy makes, which is what the interception rules exempt.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS) failed")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    keep = 1 << CAP_DAC_READ_SEARCH
    data = (_CapData * 2)(_CapData(keep, keep, 0), _CapData(0, 0, 0))
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset failed: {os.strerror(err)}")
