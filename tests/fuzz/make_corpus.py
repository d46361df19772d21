#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus (tests/fuzz/corpus/): one file per meaningful call
sequence, encoded in the operand order bpfmap_fuzz.cc reads. Run it again after changing
that order: ./make_corpus.py [DIR]."""
import os
import struct
import sys

# Map types in the order of served_types[] in fuzz_syscall_ops.cc.
HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH, LRU_PERCPU_HASH, LPM, QUEUE, STACK, \
    RINGBUF, BLOOM, USER_RINGBUF, UNSPEC, PROG_ARRAY, ARENA, TYPE_MAX = range(16)
# Bits of op_create's flag word, in the order of flag_bits[].
F_NO_PREALLOC, F_NO_COMMON_LRU, F_RDONLY, F_WRONLY, F_ZERO_SEED, F_RDONLY_PROG, \
    F_WRONLY_PROG, F_MMAPABLE = (1 << i for i in range(8))
LOOKUP, UPDATE, DELETE, NEXT_KEY, LOOKUP_AND_DELETE = range(5)
LOOKUP_BATCH, LOOKUP_AND_DELETE_BATCH, UPDATE_BATCH, DELETE_BATCH = range(4)

EDGES = [0xffffffff, 0x80000000, 0x7fffffff, 0x7ffffffe, 4096, 8192, 65536, 1 << 20,
         256, 512, 1024, 255, 257, 4095, 4097, 0x10000000, 16, 0x40000000, 0x3fffffff,
         0xfffff, 0x100000, 0xffff, 0x10000, 4096 * 3, 1 << 24, 1 << 31 | 1, 511,
         513, 1023, 1025, 0xfffffff0, 0x7ffff000]

# Pointer operands: NULL, a first-page address, the end of the role's buffer minus what
# the call touches, the start of it.
NULL, LOW, TIGHT, START = 0x00, 0x01, 0x02, 0x08


def u8(v): return bytes([v & 0xff])
def u16(v): return struct.pack('<H', v)
def u32(v): return struct.pack('<I', v & 0xffffffff)
def u64(v): return struct.pack('<Q', v)


def pick32(v):
    if v < 0xc0:
        return u8(v)
    if v in EDGES:
        return u8(0xc0 + EDGES.index(v))
    return u8(0xe0) + u32(v)


def pick64(v):
    if v < 0xf0 and (v & 0xf or v == 0):
        return u8(v)
    if v and v & (v - 1) == 0:
        return u8(0xf0) + u8(v.bit_length() - 1)
    return u8(0xf8) + u64(v)


def fill(word=0, run=b''):
    return pick32(word) + u8(len(run)) + run


def call(size=0, attr=0):
    """The attr size selector (0: the full union) and pointer (0xfe NULL, 0xff low)."""
    return u8(size) + u8(attr)


class prog:
    """An input under construction; fds are indexes into the fuzzer's fd table."""

    def __init__(self):
        self.b = b''

    def create(self, t, key=0x02, value=0x03, max_=0x0f, flags=0, extra=0, name=0,
               btf=None, size=0):
        b = u8(0) + u8(t)
        b += u8(key) if key < 0x80 else u8(0x80) + pick32(key - 0x80)
        b += u8(value) if value < 0x80 else u8(0x80) + pick32(value - 0x80)
        b += u8(max_) if max_ < 0x80 else u8(0x80) + pick32(max_ - 0x80)
        b += u8(0) + u16(flags)
        b += u8(extra)
        b += u8(name)
        if btf is None:
            b += u8(0)
        else:
            fd, kid, vid = btf
            b += u8(0x80) + u8(fd) + pick32(kid) + pick32(vid)
        b += u8(0)  # no rare fields
        self.b += b + call(size)
        return self

    def elem(self, cmd, fd, key=1, value=0, flags=0, kptr=TIGHT, vptr=TIGHT, run=b'', size=0,
             attr=0):
        self.b += (u8(2) + u8(cmd) + u8(fd) + u8(kptr) + fill(key) + u8(vptr) +
                   fill(value, run) + pick64(flags) + call(size, attr))
        return self

    def batch(self, cmd, fd, count, keys=1, values=2, first=True, elem_flags=0, flags=0):
        self.b += (u8(4) + u8(cmd) + u8(fd) + pick32(count) + u8(TIGHT) + fill(0) +
                   u8(1 if first else 0) + u8(TIGHT) + u8(START) + u8(START) + fill(keys) +
                   fill(values) + pick64(elem_flags) + pick64(flags) + call())
        return self

    def freeze(self, fd):
        self.b += u8(5) + u8(fd) + call()
        return self

    def info(self, fd, length=80, btf=False, hash_size=0, ptr=TIGHT):
        b = u8(6) + u8(fd) + pick32(length) + u8(ptr)
        if ptr >= TIGHT and length <= 4096:
            b += u8(0)
            if btf:
                b += pick32(64) + u8(TIGHT) + pick32(0) + u8(NULL)
            else:
                b += pick32(hash_size) + u8(TIGHT)
        self.b += b + call()
        return self

    def pin(self, fd, where=0, name=b'', get=False, flags=None):
        b = u8(7) + u8(1 if get else 0)
        if not get:
            b += u8(fd)
        chars = b'abcxyz019._-'
        b += u8(where) + u8(len(name)) + b''.join(u8(chars.index(c)) for c in name)
        if flags is None:
            b += u8(0)
        else:
            b += u8(0xc0) + pick32(flags) + pick32(0) + (pick32(0) if get else b'')
        self.b += b + call()
        return self

    def get(self, where=0, name=b'', flags=None):
        return self.pin(None, where, name, True, flags)

    def id_op(self, which, fd_index=None, raw=0):
        """which: 0 MAP_GET_NEXT_ID, 1 BTF_GET_NEXT_ID, 2 MAP_GET_FD_BY_ID, 3 BTF_GET_FD_BY_ID."""
        b = u8(8) + u8(which)
        b += u8(fd_index) if fd_index is not None else u8(0x80) + pick32(raw)
        self.b += b + u8(0) + call()
        return self

    def btf_load(self, blob, log=False):
        b = u8(9) + u16(len(blob)) + blob + u8(0)
        if log:
            b += u8(1) + pick32(1) + pick32(256) + u8(START)
        else:
            b += u8(0)
        self.b += b + call()
        return self

    def raw(self, cmd_index, attr=b'', size=0, attr_ptr=0):
        self.b += u8(10) + u8(cmd_index) + u8(len(attr)) + attr + call(size, attr_ptr)
        return self

    def close(self, i):
        self.b += u8(11) + u8(1) + u8(i)
        return self

    def dup(self, i, low=0):
        self.b += u8(11) + u8(0) + u8(i) + u8(low)
        return self

    def dup_over(self, src, dst, dup3=False):
        self.b += u8(11) + u8(2) + u8(src) + u8(dst | (0x80 if dup3 else 0))
        return self

    def close_range(self, i, cloexec=False):
        self.b += u8(11) + u8(3) + u8(i | (0x80 if cloexec else 0))
        return self

    def epoll_ctl(self, fd, op=0, events=1):
        """op: 0 ADD, 1 MOD, 2 DEL; events 1 is EPOLLIN."""
        self.b += u8(13) + u8(6) + u8(op) + u8(fd) + pick32(events)
        return self

    def epoll_wait(self, n=8):
        self.b += u8(13) + u8(7) + u8(n - 1)
        return self

    # Program side: handles are indexes into the fuzzer's handle table.
    def handle(self, fd):
        self.b += u8(12) + u8(0) + u8(0) + u8(fd)
        return self

    def put(self, h):
        self.b += u8(12) + u8(1) + u8(h)
        return self

    def p_lookup(self, h, key=1, write=0):
        self.b += u8(12) + u8(2) + u8(h) + fill(key) + u8(write)
        return self

    def p_lookup_percpu(self, h, key=1, cpu=0):
        self.b += u8(12) + u8(4) + u8(h) + fill(key) + pick32(cpu)
        return self

    def p_update(self, h, key=1, value=7, flags=0):
        self.b += u8(12) + u8(5) + u8(h) + fill(key) + fill(value) + pick64(flags)
        return self

    def p_delete(self, h, key=1):
        self.b += u8(12) + u8(7) + u8(h) + fill(key)
        return self

    def p_push(self, h, value=5, flags=0):
        self.b += u8(12) + u8(8) + u8(h) + fill(value) + pick64(flags)
        return self

    def p_pop(self, h):
        self.b += u8(12) + u8(9) + u8(h)
        return self

    def p_peek(self, h, value=5):
        self.b += u8(12) + u8(10) + u8(h) + fill(value)
        return self

    def reserve(self, h, size, flags=0):
        self.b += u8(12) + u8(11) + u8(h) + pick32(size) + pick64(flags)
        return self

    def commit(self, rec, discard=False, flags=0):
        self.b += u8(12) + u8(12) + u8(0) + u8(rec | (0x80 if discard else 0)) + pick64(flags)
        return self

    def output(self, h, size, flags=0):
        self.b += u8(12) + u8(13) + u8(h) + pick32(size) + pick64(flags)
        return self

    def query(self, h, what):
        self.b += u8(12) + u8(14) + u8(h) + pick64(what)
        return self

    def drain(self, h, stop_at=0, flags=0):
        self.b += u8(12) + u8(15) + u8(h) + u8(stop_at) + pick64(flags)
        return self

    # The C++ ring API.
    def consumer(self, fd, stop_at=0):
        self.b += u8(13) + u8(0) + u8(0) + u8(fd) + u8(stop_at)
        return self

    def consume(self, c=0, poll=False):
        self.b += u8(13) + u8(1) + u8(c | (0x80 if poll else 0))
        return self

    def producer(self, fd):
        self.b += u8(13) + u8(2) + u8(0) + u8(fd)
        return self

    def u_reserve(self, p, size):
        self.b += u8(13) + u8(3) + u8(p) + pick32(size)
        return self

    def u_commit(self, rec, discard=False):
        self.b += u8(13) + u8(4) + u8(rec | (0x80 if discard else 0))
        return self

    # mmap() of map fds.
    def mmap(self, fd, pages, off_pages=0, write=True):
        self.b += u8(14) + u8(0) + u8(0) + u8(fd) + u8(1 if write else 0) + pick32(pages) + \
            pick32(off_pages)
        return self

    def mwrite(self, m, off, data):
        self.b += u8(14) + u8(1) + u8(m) + pick32(off) + u8(len(data)) + data
        return self

    def munmap(self, m, pages=0):
        self.b += u8(14) + u8(2) + u8(m) + pick32(pages)
        return self

    def mprotect(self, m, prot_index):
        self.b += u8(14) + u8(3) + u8(m) + u8(prot_index)
        return self

    def mremap(self, m, pages, maymove=True):
        self.b += u8(14) + u8(4) + u8(m | (0x80 if maymove else 0)) + pick32(pages)
        return self

    def cxx(self, fd, keys=4):
        self.b += u8(15) + u8(0) + u8(fd) + u8(keys)
        return self


def btf_blob():
    """int (4 bytes, id 1) and unsigned long (8 bytes, id 2)."""
    strings = b'\0int\0long unsigned int\0'
    types = b''
    types += u32(1) + u32(1 << 24) + u32(4) + u32((1 << 24) | 32)    # INT int, signed
    types += u32(5) + u32(1 << 24) + u32(8) + u32(64)                # INT unsigned long
    hdr = u16(0xeb9f) + u8(1) + u8(0) + u32(24) + u32(0) + u32(len(types)) + \
        u32(len(types)) + u32(len(strings))
    return hdr + types + strings


def btf_blob_rich():
    """One type of every kind, for the parser: ids 1 int, 2 unsigned long, 3 int *,
    4 int[4], 5 struct pair {unsigned long a, b}, 6 typedef pair_t, 7 const pair_t,
    8 enum e, 9 int (int x), 10 func f, 11 var v, 12 datasec .data, 13 float,
    14 union u, 15 fwd fw, 16 volatile unsigned long, 17 decl_tag on pair, 18 type_tag,
    19 enum64, 20 restrict int *."""
    names = ['', 'int', 'long unsigned int', 'pair', 'a', 'b', 'pair_t', 'e', 'X', 'Y', 'x',
             'f', 'v', '.data', 'float', 'u', 'fw', 'tag', 'tt', 'e64', 'Z']
    strings, off = b'', {}
    for n in names:
        off[n] = len(strings)
        strings += n.encode() + b'\0'

    def t(name, kind, vlen, size_or_type, kflag=0):
        return u32(off[name]) + u32(kind << 24 | vlen | kflag << 31) + u32(size_or_type)
    ty = b''
    ty += t('int', 1, 0, 4) + u32(1 << 24 | 32)
    ty += t('long unsigned int', 1, 0, 8) + u32(64)
    ty += t('', 2, 0, 1)
    ty += t('', 3, 0, 0) + u32(1) + u32(1) + u32(4)
    ty += t('pair', 4, 2, 16) + u32(off['a']) + u32(2) + u32(0) + u32(off['b']) + u32(2) + u32(64)
    ty += t('pair_t', 8, 0, 5)
    ty += t('', 10, 0, 6)
    ty += t('e', 6, 2, 4) + u32(off['X']) + u32(0) + u32(off['Y']) + u32(1)
    ty += t('', 13, 1, 1) + u32(off['x']) + u32(1)
    ty += t('f', 12, 0, 9)
    ty += t('v', 14, 0, 1) + u32(1)
    ty += t('.data', 15, 1, 4) + u32(11) + u32(0) + u32(4)
    ty += t('float', 16, 0, 4)
    ty += t('u', 5, 1, 8) + u32(off['a']) + u32(2) + u32(0)
    ty += t('fw', 7, 0, 0)
    ty += t('', 9, 0, 2)
    ty += t('tag', 17, 0, 5) + u32(0xffffffff)
    ty += t('tt', 18, 0, 1)
    ty += t('e64', 19, 1, 8) + u32(off['Z']) + u32(1) + u32(0)
    ty += t('', 11, 0, 3)
    hdr = u16(0xeb9f) + u8(1) + u8(0) + u32(24) + u32(0) + u32(len(ty)) + u32(len(ty)) + \
        u32(len(strings))
    return hdr + ty + strings


def seeds():
    s = {}
    # Every served type: create, fill, read back, walk, batch, info, freeze.
    for t, name in [(HASH, 'hash'), (PERCPU_HASH, 'percpu_hash'), (LRU_HASH, 'lru_hash'),
                    (LRU_PERCPU_HASH, 'lru_percpu_hash')]:
        p = prog().create(t, key=0x02, value=0x07, max_=0x03)
        for k in range(1, 6):
            p.elem(UPDATE, 0, key=k, value=k * 3)
        p.elem(LOOKUP, 0, key=2).elem(NEXT_KEY, 0, key=99).elem(NEXT_KEY, 0, key=1)
        p.elem(DELETE, 0, key=3).elem(LOOKUP_AND_DELETE, 0, key=4)
        p.batch(LOOKUP_BATCH, 0, 2).batch(LOOKUP_BATCH, 0, 8)
        p.batch(UPDATE_BATCH, 0, 3).batch(LOOKUP_AND_DELETE_BATCH, 0, 4)
        p.batch(DELETE_BATCH, 0, 2).info(0).freeze(0).elem(UPDATE, 0, key=9)
        p.handle(0).p_update(0, 11, 12).p_lookup(0, 11, write=1).p_lookup_percpu(0, 11, 1)
        p.p_delete(0, 11)
        s[name] = p
    for t, name in [(ARRAY, 'array'), (PERCPU_ARRAY, 'percpu_array')]:
        p = prog().create(t, key=0x00, value=0x07, max_=0x07)
        p.elem(UPDATE, 0, key=1, value=5).elem(UPDATE, 0, key=8, value=5)
        p.elem(UPDATE, 0, key=1, value=5, flags=1).elem(DELETE, 0, key=1)
        p.elem(LOOKUP, 0, key=1).elem(NEXT_KEY, 0, key=7).elem(NEXT_KEY, 0, kptr=NULL)
        p.batch(LOOKUP_BATCH, 0, 3).batch(UPDATE_BATCH, 0, 2).freeze(0).info(0, hash_size=32)
        p.handle(0).p_lookup(0, 2, write=1).p_update(0, 3, 4).p_lookup_percpu(0, 3, 0)
        s[name] = p
    p = prog().create(LPM, key=0x02, value=0x03, max_=0x07, flags=F_NO_PREALLOC)
    for plen, data in [(8, 10), (16, 10 | 1 << 8), (24, 10 | 1 << 8 | 2 << 16), (0, 0)]:
        p.elem(UPDATE, 0, key=plen, value=plen, run=b'')
    p.elem(LOOKUP, 0, key=32).elem(NEXT_KEY, 0, kptr=NULL).elem(NEXT_KEY, 0, key=8)
    p.elem(DELETE, 0, key=16).handle(0).p_lookup(0, 32).p_update(0, 12, 1).p_delete(0, 12)
    s['lpm'] = p
    for t, name in [(QUEUE, 'queue'), (STACK, 'stack')]:
        p = prog().create(t, key=0x00, value=0x03, max_=0x02)
        for v in range(4):
            p.elem(UPDATE, 0, kptr=NULL, value=v, flags=2 if v == 3 else 0)
        p.elem(LOOKUP, 0, kptr=NULL).elem(LOOKUP_AND_DELETE, 0, kptr=NULL)
        p.handle(0).p_push(0, 9).p_peek(0).p_pop(0).p_pop(0).p_pop(0).p_push(0, 1, flags=2)
        p.freeze(0).elem(UPDATE, 0, kptr=NULL, value=1)
        s[name] = p
    p = prog().create(BLOOM, key=0x00, value=0x03, max_=0x0f, extra=3)
    p.elem(UPDATE, 0, kptr=NULL, value=1).elem(LOOKUP, 0, kptr=NULL, value=1)
    p.elem(LOOKUP, 0, kptr=NULL, value=2).handle(0).p_push(0, 4).p_peek(0, 4).p_peek(0, 5)
    s['bloom'] = p
    # Ring buffers: producer, consumer, mmap of the consumer page.
    p = prog().create(RINGBUF, max_=0x00).handle(0)
    p.reserve(0, 16).reserve(0, 100).commit(0).output(0, 24).query(0, 0).query(0, 2)
    p.consumer(0).consume(0).commit(0, discard=True).consume(0, poll=True)
    p.reserve(0, 4000).reserve(0, 200).commit(1).consume(0)
    p.mmap(0, 1, 0).mwrite(0, 0, u64(4096)).reserve(0, 8).mmap(0, 3, 1, write=False)
    p.freeze(0).elem(LOOKUP, 0, kptr=NULL)
    s['ringbuf'] = p
    p = prog().create(USER_RINGBUF, max_=0x00).producer(0).handle(0)
    p.u_reserve(0, 16).u_reserve(0, 64).u_commit(0).drain(0).u_commit(0, discard=True)
    p.drain(0, stop_at=1).u_reserve(0, 5000).u_reserve(0, 8).u_commit(0).drain(0)
    p.mmap(0, 2, 1).mwrite(0, 0, u64(64)).drain(0)
    s['user_ringbuf'] = p
    # Mmapable array: mappings block freeze; writes show in lookups.
    p = prog().create(ARRAY, key=0x00, value=0x07, max_=0x3f, flags=F_MMAPABLE)
    p.mmap(0, 1).mwrite(0, 8, b'abcdefgh').elem(LOOKUP, 0, key=1).freeze(0)
    p.munmap(0).freeze(0).mmap(0, 1).mmap(0, 1, write=False).mprotect(0, 1)
    p.mremap(0, 2).mremap(0, 1, maymove=False).mremap(1, 1)
    s['mmapable'] = p
    # Pins, ids, fds.
    p = prog().create(HASH).pin(0).pin(0, where=2, name=b'x').pin(0, where=3, name=b'y')
    p.pin(0, where=4, name=b'abc').pin(0, where=5).pin(0, where=7).pin(0)
    p.get().get(where=3, name=b'y', flags=8).get(name=b'zz').get(where=5)
    p.elem(UPDATE, 1, key=1).elem(LOOKUP, 0, key=1).info(1)
    p.id_op(0).id_op(2, 0).id_op(2, raw=0).close(0).id_op(0).id_op(2, 0).cxx(0)
    s['pin_get_id'] = p
    p = prog().create(HASH, flags=F_RDONLY).create(HASH, flags=F_WRONLY)
    p.elem(UPDATE, 0).elem(LOOKUP, 1).elem(DELETE, 0).freeze(1).pin(0).get(flags=16)
    p.elem(LOOKUP, 2).handle(0).p_update(0).create(HASH, flags=F_RDONLY_PROG).handle(2)
    p.p_update(1).p_delete(1).p_lookup(1, write=1)
    s['fd_modes'] = p
    p = prog().create(HASH).dup(0).dup(0, 3).dup(0, 4).close(0).elem(UPDATE, 0)
    p.elem(LOOKUP, 2).create(ARRAY, key=0).elem(LOOKUP, 3).close(1).close(0).elem(LOOKUP, 0)
    p.handle(0).close(0).p_lookup(0).put(0)
    s['dup_close'] = p
    p = prog().create(HASH).create(ARRAY, key=0).elem(UPDATE, 0, key=1).dup(0).dup_over(1, 2)
    p.elem(LOOKUP, 2, key=1).dup_over(0, 1, dup3=True).elem(LOOKUP, 1, key=1).close_range(2)
    p.close_range(0, cloexec=True).elem(LOOKUP, 0, key=1).close_range(0).elem(LOOKUP, 0)
    s['dup_over'] = p
    p = prog().create(RINGBUF, max_=0x00).create(HASH).epoll_ctl(0).epoll_ctl(1)
    p.handle(0).output(0, 8).epoll_wait().consumer(0).consume(0).epoll_wait()
    p.epoll_ctl(0, op=1, events=4).output(0, 16).epoll_wait(1).epoll_ctl(0, op=2)
    p.epoll_ctl(0).close(0).epoll_wait()
    s['epoll'] = p
    # BTF: load, make a map with its types, walk and open by id.
    p = prog().btf_load(btf_blob(), log=True).create(HASH, key=0x02, value=0x03, btf=(0, 1, 1))
    p.create(HASH, key=0x03, value=0x07, btf=(0, 2, 2)).create(HASH, btf=(0, 1, 7))
    p.info(0, length=32, btf=True).info(1).id_op(1).id_op(3, raw=1).id_op(0).close(0)
    p.btf_load(btf_blob()[:30], log=True).btf_load(b'').id_op(1)
    s['btf'] = p
    p = prog().btf_load(btf_blob_rich(), log=True)
    p.create(HASH, key=0x04, value=0x07, btf=(0, 5, 2)).create(ARRAY, key=0, value=0x0f, btf=(0, 1, 4))
    p.create(HASH, key=0x03, value=0x0f, btf=(0, 16, 7)).create(HASH, key=0x02, value=0x03, btf=(0, 8, 13))
    p.info(0, length=32, btf=True).elem(UPDATE, 1, key=1).freeze(2).info(2, hash_size=32)
    s['btf_kinds'] = p
    # Attr sizes and pointers: short, long, NULL, low, a next-id write into a NULL attr.
    p = prog().create(HASH, size=0x05 | 2 << 3).create(HASH, size=0x06).create(HASH, size=0x86)
    p.elem(LOOKUP, 0, size=0x05).elem(UPDATE, 0, attr=0xfe).elem(UPDATE, 0, attr=0xff)
    p.elem(UPDATE, 0, kptr=NULL).elem(UPDATE, 0, kptr=LOW).elem(LOOKUP, 0, vptr=LOW)
    p.elem(UPDATE, 0, flags=0xffffffffffff).elem(LOOKUP, 0, flags=4)
    p.raw(14, size=0x05, attr_ptr=0xfe).raw(14, size=0x05, attr_ptr=0xff).raw(16, attr_ptr=0xfe)
    p.info(0, ptr=NULL).info(0, length=4097).info(0, length=8).info(0, length=200)
    s['attr_sizes'] = p
    p = prog()
    for i in range(20):
        p.raw(i, attr=bytes([i] * 8))
    s['raw_cmds'] = p
    # Creation edges: sizes, flags, names, the types that are not served.
    p = prog()
    for t in range(16):
        p.create(t).create(t, key=0x80 + 0xffffffff).create(t, value=0x80 + 0x7fffffff)
        p.create(t, max_=0x80 + 0)
    p.create(HASH, flags=F_NO_PREALLOC | F_ZERO_SEED, name=2).create(HASH, name=4)
    p.create(LRU_HASH, flags=F_NO_COMMON_LRU).create(HASH, flags=F_RDONLY | F_WRONLY)
    p.create(ARRAY, value=0x80 + (1 << 20), max_=0x80 + 64).create(BLOOM, extra=15)
    p.create(RINGBUF, max_=0x80 + 4097).create(HASH, max_=0x80 + (1 << 20))
    s['create_edges'] = p
    p = prog().create(HASH, max_=0x01).create(LRU_HASH, max_=0x01)
    for k in range(1, 12):
        p.elem(UPDATE, 0, key=k, flags=k % 3).elem(UPDATE, 1, key=k, flags=k % 3)
        p.elem(LOOKUP, 1, key=k - 1)
    p.batch(LOOKUP_AND_DELETE_BATCH, 1, 10).batch(LOOKUP_BATCH, 0, 1, first=False)
    s['full_maps'] = p
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus')
    os.makedirs(out, exist_ok=True)
    for name, p in sorted(seeds().items()):
        with open(os.path.join(out, name), 'wb') as f:
            f.write(p.b)
    print(f'{len(seeds())} seeds in {out}')


if __name__ == '__main__':
    main()
