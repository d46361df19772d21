// Kernel-differential tests of the batch commands: argument checks, drains that return
// every pair once, and cursors that survive deletes.
#include "kernel_diff.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <random>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

namespace kernel_diff {
namespace {

// ==== batch commands =================================================================================

struct BA {
	uint32_t count = 4;
	const std::vector<uint8_t> *keys = nullptr; // input keys (update/delete), else zeroed
	const std::vector<uint8_t> *vals = nullptr; // input values (update)
	const std::vector<uint8_t> *in = nullptr;   // in_batch token bytes; null: NULL in_batch
	Ptr keysp = Ptr::BUF, valsp = Ptr::BUF;
	uint64_t elem_flags = 0, flags = 0;
	unsigned size = KATTR;
	size_t cap = 0; // elements the buffers hold; 0: count
	std::vector<std::pair<size_t, uint8_t>> poke;
};

// Buffers: 0 keys, 1 values (when present), then in_batch, then out_batch.
Req batch_req(const Pair &p, int cmd, const BA &a)
{
	Req q(cmd, a.size);
	q.fd(B_FD, p.k, p.u);
	q.u32(B_COUNT, a.count);
	q.u64(B_ELEM_FLAGS, a.elem_flags);
	q.u64(B_FLAGS, a.flags);
	size_t cap = a.cap ? a.cap : a.count;
	auto arr = [&](size_t off, Ptr how, const std::vector<uint8_t> *init, size_t n) {
		if (how == Ptr::BAD) {
			q.u64(off, 0x10);
		} else if (how == Ptr::BUF) {
			std::vector<uint8_t> b(n + 8, SENTINEL);
			if (init)
				std::copy(init->begin(), init->begin() + std::min(init->size(), n),
					  b.begin());
			q.buf(off, b);
		}
	};
	arr(B_KEYS, a.keysp, a.keys, cap * p.ks);
	if (cmd != C_DELETE_BATCH)
		arr(B_VALUES, a.valsp, a.vals, cap * p.vb());
	if (a.in)
		q.buf(B_IN, *a.in);
	q.buf(B_OUT, std::vector<uint8_t>(std::max<uint32_t>(p.ks, 4) + 8, SENTINEL));
	for (auto &[off, v] : a.poke)
		q.attr[off] = v;
	return q;
}

std::vector<uint8_t> keys_of(const std::vector<uint32_t> &ks, uint32_t key_size)
{
	std::vector<uint8_t> out;
	for (uint32_t k : ks) {
		std::vector<uint8_t> b = u32key(k);
		b.resize(key_size, 0);
		out.insert(out.end(), b.begin(), b.end());
	}
	return out;
}

std::vector<uint8_t> vals_of(size_t n, uint32_t value_size, uint8_t base)
{
	std::vector<uint8_t> out(n * value_size);
	for (size_t i = 0; i < out.size(); i++)
		out[i] = static_cast<uint8_t>(base + i);
	return out;
}

// Every batch command's argument checks, on maps whose contents make the outcome
// independent of hashing (a hash map holding at most one key), so all bytes compare.
TEST_F(KernelDiff, BatchArgumentChecks)
{
	const std::vector<uint8_t> k1 = keys_of({1}, 4), past_hash = u32key(1u << 20),
				   past_array = u32key(100), zero4 = u32key(0);
	const std::vector<uint8_t> upd_keys = keys_of({1, 2, 3, 4}, 4),
				   arr_keys = keys_of({0, 2, 100, 3}, 4);
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct Case {
		const char *name;
		void (*edit)(BA &);
	};
	const Case cases[] = {
		{"plain", [](BA &) {}},
		{"count 0", [](BA &a) { a.count = 0; }},
		{"count 1", [](BA &a) { a.count = 1; }},
		{"elem_flags F_LOCK", [](BA &a) { a.elem_flags = U_LOCK; }},
		{"elem_flags 1", [](BA &a) { a.elem_flags = 1; }},
		{"elem_flags 2", [](BA &a) { a.elem_flags = 2; }},
		{"elem_flags 1<<32", [](BA &a) { a.elem_flags = 1ull << 32; }},
		{"flags 1", [](BA &a) { a.flags = 1; }},
		{"flags 1<<40", [](BA &a) { a.flags = 1ull << 40; }},
		{"keys NULL", [](BA &a) { a.keysp = Ptr::NUL; }},
		{"keys bad", [](BA &a) { a.keysp = Ptr::BAD; }},
		{"values NULL", [](BA &a) { a.valsp = Ptr::NUL; }},
		{"tail byte 56",
		 [](BA &a) {
			 a.poke.push_back({56, 1});
		 }},
		{"tail byte 100",
		 [](BA &a) {
			 a.poke.push_back({100, 1});
		 }},
		{"attr size 56", [](BA &a) { a.size = 56; }},
		{"attr size 40", [](BA &a) { a.size = 40; }},
	};
	for (int cmd :
	     {C_LOOKUP_BATCH, C_LOOKUP_AND_DELETE_BATCH, C_UPDATE_BATCH, C_DELETE_BATCH}) {
		for (uint32_t type : {T_HASH, T_ARRAY, T_PERCPU_HASH, T_PERCPU_ARRAY}) {
			std::string t =
				std::string(cmd_name(cmd)) + " " + map_type_name(type) + " ";
			const std::vector<uint8_t> upd_vals = vals_of(4, value_bytes(type, 8), 7);
			auto fresh = [&]() {
				Pair p = create_both(t, create_req(type, 4, 8, 8));
				if (p)
					fill(p, 1, 0x31);
				return p;
			};
			auto base = [&](BA &a) {
				if (cmd == C_UPDATE_BATCH || cmd == C_DELETE_BATCH) {
					a.keys = is_hash(type) ? &upd_keys : &arr_keys;
					a.vals = &upd_vals;
				}
			};
			for (const Case &c : cases) {
				Pair p = fresh();
				ASSERT_TRUE(p);
				BA a;
				base(a);
				c.edit(a);
				check(t + c.name, batch_req(p, cmd, a));
				// What the command left behind must agree too.
				for (uint32_t key = 0; key <= 4; key++) {
					std::vector<uint8_t> kb = u32key(key);
					EA l;
					l.key = &kb;
					elem(t + c.name + " then LOOKUP " + std::to_string(key), p,
					     C_LOOKUP, l);
				}
			}
			{
				Pair p = fresh();
				BA a;
				base(a);
				a.in = is_hash(type) ? &past_hash : &past_array;
				check(t + "in_batch past the end", batch_req(p, cmd, a));
				a.in = &zero4;
				check(t + "in_batch 0", batch_req(p, cmd, a));
			}
			{
				Pair p = fresh();
				BA a;
				base(a);
				Req q = batch_req(p, cmd, a);
				q.fds[0] = {B_FD, 999, 999};
				check(t + "bad fd", q);
				q.fds[0] = {B_FD, devnull, devnull};
				check(t + "non-map fd", q);
			}
			for (uint32_t acc : {F_RDONLY, F_WRONLY}) {
				Pair p = create_both(t, create_req(type, 4, 8, 8, acc));
				BA a;
				base(a);
				check(t + (acc == F_RDONLY ? "RDONLY fd" : "WRONLY fd"),
				      batch_req(p, cmd, a));
			}
			{
				Pair p = fresh();
				check(t + "freeze", elem_req(p, C_FREEZE, EA{}));
				BA a;
				base(a);
				check(t + "frozen", batch_req(p, cmd, a));
			}
		}
	}
	close(devnull);
}

// The same keys in both maps: each side's batches must return every pair exactly once and
// end with ENOENT, for many batch sizes; lookup_and_delete must leave both maps empty.
// A batch attr as the 6.18 uapi lays it out, padded to the full attr size.
struct battr {
	uint64_t in_batch, out_batch, keys, values;
	uint32_t count, map_fd;
	uint64_t elem_flags, flags;
	uint8_t pad[KATTR - 56];
};
static_assert(sizeof(battr) == KATTR);

struct Drained {
	std::map<std::vector<uint8_t>, std::vector<uint8_t>> pairs;
	int calls = 0, dups = 0, last_err = 0;
	bool nospace = false;
};

Drained drain(const Pair &p, bool kernel, int cmd, uint32_t step, bool carry_count)
{
	Drained d;
	std::vector<uint8_t> keys(size_t(p.max) * p.ks + 64), vals(size_t(p.max) * p.vb() + 64);
	uint32_t token = 0, count = step, total = 0;
	for (;;) {
		battr a;
		memset(&a, 0, sizeof(a));
		a.in_batch = d.calls ? reinterpret_cast<uintptr_t>(&token) : 0;
		a.out_batch = reinterpret_cast<uintptr_t>(&token);
		a.keys = reinterpret_cast<uintptr_t>(keys.data() + size_t(total) * p.ks);
		a.values = reinterpret_cast<uintptr_t>(vals.data() + size_t(total) * p.vb());
		a.count = carry_count ? count : step;
		if (total + a.count > p.max)
			a.count = p.max - total + 1; // never past the buffers
		a.map_fd = static_cast<uint32_t>(kernel ? p.k : p.u);
		errno = 0;
		long r = call_side(kernel, cmd, &a, sizeof(a));
		d.calls++;
		count = a.count;
		if (r && errno == ENOSPC) {
			d.nospace = true;
			break;
		}
		for (uint32_t i = 0; i < a.count; i++) {
			const uint8_t *k = keys.data() + size_t(total + i) * p.ks;
			const uint8_t *v = vals.data() + size_t(total + i) * p.vb();
			if (!d.pairs.emplace(std::vector<uint8_t>(k, k + p.ks),
					     std::vector<uint8_t>(v, v + p.vb()))
				     .second)
				d.dups++;
		}
		total += a.count;
		if (r) {
			d.last_err = errno;
			break;
		}
		if (a.count == 0 || d.calls > 100000) {
			d.last_err = -1; // success without progress: would loop forever
			break;
		}
	}
	return d;
}

void batch_update_both(const std::string &label, const Pair &p, const std::vector<uint32_t> &ks,
		       uint8_t base)
{
	std::vector<uint8_t> keys = keys_of(ks, p.ks), vals = vals_of(ks.size(), p.vb(), base);
	BA a;
	a.count = static_cast<uint32_t>(ks.size());
	a.keys = &keys;
	a.vals = &vals;
	Both b = check(label, batch_req(p, C_UPDATE_BATCH, a));
	EXPECT_EQ(b.k.ret, 0) << label << ": kernel " << errname(b.k.err);
}

TEST_F(KernelDiff, BatchDrainsEveryPairOnce)
{
	std::mt19937 rng(static_cast<uint32_t>(global_seed() ^ 0xba7c4));
	for (uint32_t type : {T_HASH, T_ARRAY, T_PERCPU_HASH, T_PERCPU_ARRAY}) {
		for (uint32_t max : {10u, 100u, 1000u}) {
			std::string t = std::string(map_type_name(type)) + " max " +
					std::to_string(max) + " ";
			Pair p = create_both(t, create_req(type, 4, 12, max));
			ASSERT_TRUE(p);
			std::vector<uint32_t> ks;
			for (uint32_t i = 0; i < max; i++)
				ks.push_back(is_hash(type) ? static_cast<uint32_t>(rng()) : i);
			batch_update_both(t + "UPDATE_BATCH all", p, ks, 3);
			// One more than fits: E2BIG for the hash (full) and the array (index), at the
			// same element on both sides.
			batch_update_both(t + "UPDATE_BATCH refill", p, ks, 5);
			std::vector<uint32_t> extra = {ks[0], max + 7, ks[1]};
			{
				std::vector<uint8_t> keys = keys_of(extra, 4),
						     vals = vals_of(3, p.vb(), 9);
				BA a;
				a.count = 3;
				a.keys = &keys;
				a.vals = &vals;
				check(t + "UPDATE_BATCH past capacity",
				      batch_req(p, C_UPDATE_BATCH, a));
			}
			for (uint32_t step : {1u, 2u, 3u, 7u, 16u, 64u, max, max + 5}) {
				for (bool carry : {false, true}) {
					std::string l = t + "LOOKUP_BATCH step " +
							std::to_string(step) +
							(carry ? " carried count" : "");
					Drained k = drain(p, true, C_LOOKUP_BATCH, step, carry);
					Drained u = drain(p, false, C_LOOKUP_BATCH, step, carry);
					if (u.last_err == -1 || u.dups)
						ADD_FAILURE() << "[" << l << "] bpfmap: " << u.dups
							      << " duplicates, "
							      << (u.last_err == -1
									  ? "a success with count 0"
									  : "");
					if (k.nospace || u.nospace)
						continue; // which bucket overflows depends on the hash
					if (k.last_err != u.last_err || k.pairs != u.pairs)
						MISMATCH(l, "kernel " << k.pairs.size()
								      << " pairs, end "
								      << errname(k.last_err)
								      << "; bpfmap "
								      << u.pairs.size()
								      << " pairs, end "
								      << errname(u.last_err));
				}
			}
			if (!is_hash(type))
				continue;
			Drained k = drain(p, true, C_LOOKUP_AND_DELETE_BATCH, 7, false);
			Drained u = drain(p, false, C_LOOKUP_AND_DELETE_BATCH, 7, false);
			if (!k.nospace && !u.nospace &&
			    (k.pairs != u.pairs || k.last_err != u.last_err))
				MISMATCH(t + "LOOKUP_AND_DELETE_BATCH step 7",
					 "kernel " << k.pairs.size() << " pairs; bpfmap "
						   << u.pairs.size());
			EA n;
			n.keyp = Ptr::NUL;
			if (!k.nospace && !u.nospace)
				elem(t + "empty after LOOKUP_AND_DELETE_BATCH", p, C_GET_NEXT_KEY,
				     n);
			// DELETE_BATCH stops at the first missing key and says how many it deleted.
			batch_update_both(t + "UPDATE_BATCH again", p, ks, 11);
			std::vector<uint32_t> del = {ks[0], ks[1], 0xdead, ks[2]};
			std::vector<uint8_t> keys = keys_of(del, 4);
			BA a;
			a.count = 4;
			a.keys = &keys;
			check(t + "DELETE_BATCH with a missing key",
			      batch_req(p, C_DELETE_BATCH, a));
		}
	}
}

// The selftest's loop (map_tests/htab_map_batch_ops.c): the returned count becomes the
// next call's capacity; ENOSPC skips the step. Some step of 1..9 must complete.
TEST_F(KernelDiff, BatchSelftestLoopCompletes)
{
	for (int round = 0; round < 5; round++) {
		Pair p = create_both("HASH 10", create_req(T_HASH, 4, 4, 10));
		ASSERT_TRUE(p);
		std::vector<uint32_t> ks;
		for (uint32_t i = 1; i <= 10; i++)
			ks.push_back(i);
		bool kdone = false, udone = false;
		for (uint32_t step = 1; step < 10; step++) {
			batch_update_both("fill", p, ks, 1);
			Drained k = drain(p, true, C_LOOKUP_BATCH, step, true);
			Drained u = drain(p, false, C_LOOKUP_BATCH, step, true);
			kdone |= !k.nospace && k.pairs.size() == 10;
			udone |= !u.nospace && u.pairs.size() == 10;
		}
		EXPECT_TRUE(udone) << "no step completed in bpfmap (kernel: " << kdone << ")";
	}
}

// A cursor survives deletes between batches: every key never deleted is returned once.
TEST_F(KernelDiff, BatchCursorSurvivesDeletes)
{
	for (bool kernel : {true, false}) {
		Pair p = create_both("HASH 300", create_req(T_HASH, 4, 8, 300));
		ASSERT_TRUE(p);
		std::vector<uint32_t> ks;
		for (uint32_t i = 0; i < 300; i++)
			ks.push_back(i * 2654435761u);
		batch_update_both("fill", p, ks, 1);
		int fd = kernel ? p.k : p.u;
		auto call = [&](battr &a) {
			return call_side(kernel, C_LOOKUP_BATCH, &a, sizeof(a));
		};
		std::multiset<uint32_t> seen;
		std::set<uint32_t> deleted;
		uint32_t token = 0;
		std::vector<uint32_t> keys(64);
		std::vector<uint64_t> vals(64);
		for (int calls = 0;; calls++) {
			battr a;
			memset(&a, 0, sizeof(a));
			a.in_batch = calls ? reinterpret_cast<uintptr_t>(&token) : 0;
			a.out_batch = reinterpret_cast<uintptr_t>(&token);
			a.keys = reinterpret_cast<uintptr_t>(keys.data());
			a.values = reinterpret_cast<uintptr_t>(vals.data());
			a.count = 32;
			a.map_fd = static_cast<uint32_t>(fd);
			long r = call(a);
			int err = r ? errno : 0;
			ASSERT_TRUE(r == 0 || err == ENOENT)
				<< (kernel ? "kernel " : "bpfmap ") << errname(err);
			for (uint32_t i = 0; i < a.count; i++)
				seen.insert(keys[i]);
			if (r)
				break;
			// Delete a third of the keys, returned or not, before the next batch.
			for (uint32_t j = static_cast<uint32_t>(calls); j < ks.size(); j += 3)
				if (deleted.insert(ks[j]).second) {
					std::vector<uint8_t> d(KATTR, 0);
					put32(d, E_FD, static_cast<uint32_t>(fd));
					put64(d, E_KEY, reinterpret_cast<uintptr_t>(&ks[j]));
					long dr = call_side(kernel, C_DELETE, d.data(), KATTR);
					ASSERT_EQ(dr, 0);
				}
		}
		for (uint32_t k : ks) {
			size_t n = seen.count(k);
			if (!deleted.count(k))
				EXPECT_EQ(n, 1u) << (kernel ? "kernel" : "bpfmap") << " key " << k;
			else
				EXPECT_LE(n, 1u) << (kernel ? "kernel" : "bpfmap") << " key " << k;
		}
	}
}

} // namespace
} // namespace kernel_diff
