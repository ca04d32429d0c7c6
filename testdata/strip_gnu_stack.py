#!/usr/bin/env python3
"""Turn the PT_GNU_STACK program header of a little-endian ELF32/ELF64 file into PT_NULL.

Usage: strip_gnu_stack.py IN OUT   (OUT is written fresh, with IN's permissions)
Fails (exit 1) if IN is not such an ELF file or has no PT_GNU_STACK.
"""
import os
import struct
import sys

PT_NULL = 0
PT_GNU_STACK = 0x6474E551


def die(msg):
    sys.exit(f"strip_gnu_stack.py: {msg}")


def patch(data):
    if data[:4] != b"\x7fELF":
        die("not an ELF file")
    ei_class, ei_data = data[4], data[5]
    if ei_data != 1:
        die("not little-endian (EI_DATA != ELFDATA2LSB)")
    if ei_class == 1:  # ELF32: e_phoff @0x1c (u32), e_phentsize/e_phnum @0x2a/0x2c
        (e_phoff,) = struct.unpack_from("<I", data, 0x1C)
        e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x2A)
        min_ent = 32
    elif ei_class == 2:  # ELF64: e_phoff @0x20 (u64), e_phentsize/e_phnum @0x36/0x38
        (e_phoff,) = struct.unpack_from("<Q", data, 0x20)
        e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
        min_ent = 56
    else:
        die(f"unknown EI_CLASS {ei_class}")
    if e_phentsize < min_ent or e_phoff + e_phnum * e_phentsize > len(data):
        die("bad program header table")
    found = 0
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize  # p_type is the first u32 in both classes
        (p_type,) = struct.unpack_from("<I", data, off)
        if p_type == PT_GNU_STACK:
            struct.pack_into("<I", data, off, PT_NULL)
            found += 1
    if not found:
        die("no PT_GNU_STACK program header")
    return found


def main():
    if len(sys.argv) != 3:
        die("usage: strip_gnu_stack.py IN OUT")
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        data = bytearray(f.read())
    patch(data)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, os.stat(src).st_mode & 0o7777)
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
