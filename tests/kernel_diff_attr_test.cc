// Kernel-differential tests of the attr itself: the size each command accepts, bytes past its
// last field, unknown commands, NULL and bad pointers, and bad fds.
#include "kernel_diff.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace kernel_diff {
namespace {

// ==== attr size and tail rules =================================================================

struct CmdCase {
	int cmd;
	size_t first_zero; // first byte that must be zero (CHECK_ATTR)
};
const CmdCase kCmds[] = {{C_LOOKUP, 32},
			 {C_UPDATE, 32},
			 {C_DELETE, 16},
			 {C_GET_NEXT_KEY, 24},
			 {C_LOOKUP_AND_DELETE, 32},
			 {C_FREEZE, 4}};

// A valid request for cmd on a hash map holding key 1.
Req valid_elem_req(const Pair &p, int cmd)
{
	static const std::vector<uint8_t> k1 = u32key(1), v = std::vector<uint8_t>(8, 0x42);
	EA a;
	a.key = &k1;
	a.val = &v;
	return elem_req(p, cmd, a);
}

TEST_F(KernelDiff, AttrSizes)
{
	const unsigned sizes[] = {0,   4,   8,	 16,   24,   32,   100,	       167,
				  168, 169, 200, 4096, 4097, 8192, 0xffffffffu};
	for (const CmdCase &c : kCmds) {
		for (unsigned size : sizes) {
			Pair p = hash_pair("attrsize map");
			ASSERT_TRUE(p);
			fill(p, 1, 7);
			Req q = valid_elem_req(p, c.cmd);
			Req r(c.cmd, size);
			r.fds = q.fds;
			r.ptrs = q.ptrs;
			r.bufs = q.bufs;
			std::copy(q.attr.begin(), q.attr.begin() + KATTR, r.attr.begin());
			// Fields beyond `size` are not passed; clear them in our copy so partial
			// pointers are never passed (a size in the middle of a pointer would make one).
			std::string label =
				std::string(cmd_name(c.cmd)) + " size " + std::to_string(size);
			check(label, r);
			if (size > KATTR && size <= 8192) {
				Req t = r;
				t.attr[std::min<size_t>(size, 8192) - 1] = 1; // non-zero tail byte
				check(label + " non-zero last byte", t);
			}
		}
	}
	// MAP_CREATE with short and long attrs.
	for (unsigned size :
	     {0u, 4u, 8u, 12u, 16u, 17u, 20u, 28u, 44u, 92u, 100u, 168u, 169u, 4096u, 4097u}) {
		Req q = create_req(T_HASH, 4, 8, 4, 0, "sized");
		Req r(C_MAP_CREATE, size);
		std::copy(q.attr.begin(), q.attr.begin() + KATTR, r.attr.begin());
		check("MAP_CREATE size " + std::to_string(size), r);
		if (size > KATTR) {
			r.attr[size - 1] = 0x80;
			check("MAP_CREATE size " + std::to_string(size) + " non-zero last byte", r);
		}
	}
	// A NULL attr: size 0 is an all-zero attr, anything else faults (unless too big).
	for (int cmd : {C_MAP_CREATE, C_LOOKUP, C_UPDATE, C_DELETE, C_GET_NEXT_KEY,
			C_LOOKUP_AND_DELETE, C_FREEZE, C_OBJ_GET_INFO}) {
		for (unsigned size : {0u, 16u, 168u, 4097u}) {
			Req r(cmd, size);
			r.null_attr = true;
			check(std::string(cmd_name(cmd)) + " NULL attr size " +
				      std::to_string(size),
			      r);
		}
	}
}

TEST_F(KernelDiff, UnknownCommands)
{
	for (int cmd : {9999, -1, 1000, 0x7fffffff}) {
		Req r(cmd);
		check("cmd " + std::to_string(cmd), r);
	}
}

TEST_F(KernelDiff, NonZeroBytesAfterLastField)
{
	for (const CmdCase &c : kCmds) {
		std::vector<size_t> offs = {c.first_zero, c.first_zero + 1, 100, 167};
		for (size_t off : offs) {
			for (uint8_t v : {0x01, 0x80}) {
				Pair p = hash_pair("tail map");
				ASSERT_TRUE(p);
				fill(p, 1, 7);
				Req q = valid_elem_req(p, c.cmd);
				q.attr[off] = v;
				check(std::string(cmd_name(c.cmd)) + " byte " +
					      std::to_string(off) + "=" + std::to_string(v),
				      q);
			}
		}
		// Byte 168 with size 169: E2BIG, whatever the command.
		Pair p = hash_pair("tail map");
		ASSERT_TRUE(p);
		Req q = valid_elem_req(p, c.cmd);
		Req r(c.cmd, 169);
		r.fds = q.fds;
		r.ptrs = q.ptrs;
		r.bufs = q.bufs;
		std::copy(q.attr.begin(), q.attr.begin() + KATTR, r.attr.begin());
		r.attr[168] = 1;
		check(std::string(cmd_name(c.cmd)) + " byte 168 (size 169)", r);
	}
	// The element commands ignore the padding after map_fd; FREEZE does not.
	for (const CmdCase &c : kCmds) {
		for (size_t off = 4; off < 8; off++) {
			Pair p = hash_pair("padding map");
			ASSERT_TRUE(p);
			fill(p, 1, 7);
			Req q = valid_elem_req(p, c.cmd);
			q.attr[off] = 0xff;
			check(std::string(cmd_name(c.cmd)) + " padding byte " + std::to_string(off),
			      q);
		}
	}
	// MAP_CREATE: bytes 92..167.
	for (size_t off : {MC_END, MC_END + 1, size_t{100}, size_t{167}}) {
		Req q = create_req(T_HASH, 4, 4, 1);
		q.attr[off] = 1;
		check("MAP_CREATE byte " + std::to_string(off), q);
		Req a = create_req(T_ARRAY, 4, 4, 1);
		a.attr[off] = 1;
		check("MAP_CREATE(ARRAY) byte " + std::to_string(off), a);
	}
	// OBJ_GET_INFO_BY_FD: bytes 16..167.
	Pair p = hash_pair("info tail");
	ASSERT_TRUE(p);
	for (size_t off : {size_t{16}, size_t{17}, size_t{100}, size_t{167}}) {
		Req q = info_req(p.k, p.u, INFO_SIZE);
		q.attr[off] = 1;
		check("OBJ_GET_INFO byte " + std::to_string(off), q, id_mask());
	}
}

// ==== pointers and fds =======================================================================

TEST_F(KernelDiff, NullAndBadPointers)
{
	for (uint32_t type : {T_HASH, T_ARRAY}) {
		std::string t = type == T_HASH ? "HASH " : "ARRAY ";
		Pair p = type == T_HASH ? hash_pair(t) : array_pair(t);
		ASSERT_TRUE(p);
		fill(p, 1, 7); // one key only: a hash's iteration order is its own
		const std::vector<uint8_t> k1 = u32key(1), k3 = u32key(3), k7 = u32key(7),
					   kbig = u32key(0xffffffffu), val(8, 0x11);
		for (Ptr kp : {Ptr::NUL, Ptr::BAD}) {
			std::string ks = kp == Ptr::NUL ? "key NULL" : "key 0x10";
			for (int cmd : {C_LOOKUP, C_UPDATE, C_DELETE, C_LOOKUP_AND_DELETE}) {
				EA a;
				a.keyp = kp;
				a.val = &val;
				elem(t + cmd_name(cmd) + " " + ks, p, cmd, a);
			}
			EA a;
			a.keyp = kp;
			elem(t + "GET_NEXT_KEY " + ks, p, C_GET_NEXT_KEY, a);
		}
		for (Ptr vp : {Ptr::NUL, Ptr::BAD}) {
			std::string vs = vp == Ptr::NUL ? "value NULL" : "value 0x10";
			for (const auto *key : {&k1, &k3}) {
				std::string kn = " key " + std::to_string((*key)[0]);
				EA a;
				a.key = key;
				a.valp = vp;
				elem(t + "LOOKUP " + vs + kn, p, C_LOOKUP, a);
				elem(t + "UPDATE " + vs + kn, p, C_UPDATE, a);
				a.flags = 3;
				elem(t + "UPDATE flags 3 " + vs + kn, p, C_UPDATE, a);
				a.flags = 7;
				elem(t + "UPDATE flags 7 " + vs + kn, p, C_UPDATE, a);
				a.flags = 0;
				elem(t + "GET_NEXT_KEY next " + vs + kn, p, C_GET_NEXT_KEY, a);
				EA n;
				n.keyp = Ptr::NUL;
				n.valp = vp;
				elem(t + "GET_NEXT_KEY key NULL next " + vs, p, C_GET_NEXT_KEY, n);
			}
			// Last array index / out-of-range index with a bad next_key.
			for (const auto *key : {&k7, &kbig}) {
				EA a;
				a.key = key;
				a.valp = vp;
				elem(t + "GET_NEXT_KEY next " + vs + " key " + hex(*key), p,
				     C_GET_NEXT_KEY, a);
			}
			// Hash: the element goes even though the copy-out faults.
			EA a;
			a.key = &k1;
			a.valp = vp;
			elem(t + "LOOKUP_AND_DELETE " + vs, p, C_LOOKUP_AND_DELETE, a);
			EA l;
			l.key = &k1;
			elem(t + "LOOKUP after faulting LOOKUP_AND_DELETE", p, C_LOOKUP, l);
			fill(p, 1, 9);
		}
	}
}

TEST_F(KernelDiff, BadFds)
{
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	ASSERT_GE(devnull, 0);
	int pipefd[2];
	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	int efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_GE(efd, 0);
	int mfd = memfd_create("kd", MFD_CLOEXEC); // a regular file, 2 pages of zeros
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(ftruncate(mfd, 8192), 0);
	int closed = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ASSERT_GE(closed, 0);
	close(closed);

	struct F {
		const char *name;
		int fd;
	} fds[] = {{"closed", closed},	       {"9999", 9999},	       {"-1", -1},
		   {"0x7fffffff", 0x7fffffff}, {"/dev/null", devnull}, {"pipe", pipefd[0]},
		   {"eventfd", efd},	       {"memfd", mfd}};
	Pair shape; // only the sizes matter for elem_req
	shape.ks = 64;
	shape.vs = 64;
	std::vector<uint8_t> key(64, 1), val(64, 2);
	for (auto &f : fds) {
		shape.k = shape.u = f.fd;
		for (int cmd : {C_LOOKUP, C_UPDATE, C_DELETE, C_GET_NEXT_KEY, C_LOOKUP_AND_DELETE,
				C_FREEZE}) {
			for (uint64_t flags : {uint64_t{0}, uint64_t{1}, uint64_t{8}}) {
				if (flags &&
				    (cmd == C_DELETE || cmd == C_GET_NEXT_KEY || cmd == C_FREEZE))
					continue;
				EA a;
				a.key = &key;
				a.val = &val;
				a.flags = flags;
				elem(std::string(cmd_name(cmd)) + " fd " + f.name + " flags " +
					     std::to_string(flags),
				     shape, cmd, a);
			}
		}
		check(std::string("OBJ_GET_INFO fd ") + f.name, info_req(f.fd, f.fd, INFO_SIZE));
		check(std::string("OBJ_GET_INFO len 0 fd ") + f.name,
		      info_req(f.fd, f.fd, 0, true));
	}
	shape.k = shape.u = -1; // not ours to close
	close(devnull);
	close(pipefd[0]);
	close(pipefd[1]);
	close(efd);
	close(mfd);

	// A map fd after close.
	Pair p = hash_pair("closed map");
	ASSERT_TRUE(p);
	int k = p.k, u = p.u;
	p.reset();
	Pair gone;
	gone.k = k;
	gone.u = u;
	gone.ks = 4;
	gone.vs = 8;
	std::vector<uint8_t> k1 = u32key(1), v(8, 3);
	for (int cmd :
	     {C_LOOKUP, C_UPDATE, C_DELETE, C_GET_NEXT_KEY, C_LOOKUP_AND_DELETE, C_FREEZE}) {
		EA a;
		a.key = &k1;
		a.val = &v;
		elem(std::string(cmd_name(cmd)) + " closed map fd", gone, cmd, a);
	}
	check("OBJ_GET_INFO closed map fd", info_req(k, u, INFO_SIZE));
	gone.k = gone.u = -1;
}

} // namespace
} // namespace kernel_diff
