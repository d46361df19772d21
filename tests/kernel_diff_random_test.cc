// Kernel-differential tests: seeded random operation sequences on HASH, ARRAY and the per-CPU
// maps, each call checked against the kernel and against a model of the map.
#include "kernel_diff.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <sys/mman.h>
#include <vector>

namespace kernel_diff {
namespace {

// ==== seeded random operation sequences ===================================================================

struct Cfg {
	uint32_t type, ks, vs, max, flags;
};

std::string cfg_name(const Cfg &c)
{
	std::string s = map_type_name(c.type);
	std::transform(s.begin(), s.end(), s.begin(),
		       [](unsigned char ch) { return std::tolower(ch); });
	s += "_k" + std::to_string(c.ks) + "_v" + std::to_string(c.vs) + "_m" +
	     std::to_string(c.max);
	if (c.flags & F_NO_PREALLOC)
		s += "_noprealloc";
	if (c.flags & F_ZERO_SEED)
		s += "_zeroseed";
	if (c.flags & F_MMAPABLE)
		s += "_mmapable";
	return s;
}

// Per-CPU types: the value sizes whose padding matters, and both allocation modes.
std::vector<Cfg> percpu_cfgs(uint32_t type)
{
	const std::pair<uint32_t, uint32_t> kv[] = {{4, 4}, {4, 8}, {3, 5}, {8, 20}, {16, 64}};
	std::vector<Cfg> v;
	for (auto [k, val] : kv)
		for (uint32_t m : {1u, 7u, 64u, 1000u}) {
			if (type == T_PERCPU_ARRAY)
				v.push_back({type, 4, val, m, 0});
			else
				for (uint32_t f : {0u, F_NO_PREALLOC})
					v.push_back({type, k, val, m, f});
		}
	return v;
}

std::vector<Cfg> random_cfgs(uint32_t type)
{
	const std::pair<uint32_t, uint32_t> kv[] = {{1, 1},   {4, 4}, {4, 8},	{8, 16},
						    {16, 64}, {3, 5}, {64, 256}};
	const uint32_t maxes[] = {1, 2, 7, 64, 1000};
	std::vector<Cfg> v;
	for (auto [k, val] : kv) {
		if (type == T_ARRAY && k != 4 && k != 1 && k != 3)
			continue; // arrays: key is always 4; use each value size once
		for (uint32_t m : maxes) {
			if (type == T_HASH) {
				for (uint32_t f : {0u, F_NO_PREALLOC, F_ZERO_SEED})
					v.push_back({T_HASH, k, val, m, f});
			} else {
				for (uint32_t f : {0u, F_MMAPABLE})
					v.push_back({T_ARRAY, 4, val, m, f});
			}
		}
	}
	if (type == T_ARRAY) // value sizes 16, 64, 256 too
		for (uint32_t val : {16u, 64u, 256u})
			for (uint32_t m : maxes)
				for (uint32_t f : {0u, F_MMAPABLE})
					v.push_back({T_ARRAY, 4, val, m, f});
	return v;
}

void PrintTo(const Cfg &c, std::ostream *os) { *os << cfg_name(c); }

class RandomOps : public ::testing::TestWithParam<Cfg> {
protected:
	void SetUp() override { SKIP_WITHOUT_KERNEL(); }
};

using Bytes = std::vector<uint8_t>;

class Runner {
public:
	Runner(const Cfg &c)
		: c_(c)
	{
		seed_ = global_seed() ^ fnv(cfg_name(c));
		rng_.seed(seed_);
		salt_ = rng_();
		if (is_hash(c.type)) {
			uint64_t d = c.max + std::max<uint32_t>(3, c.max / 4);
			if (c.ks < 4)
				d = std::min<uint64_t>(d, uint64_t{1} << (8 * c.ks));
			domain_ = static_cast<uint32_t>(d);
		} else {
			amodel_.assign(c.max, Bytes(value_bytes(c.type, c.vs), 0));
		}
	}

	void run()
	{
		p_ = create_both(where("create"),
				 create_req(c_.type, c_.ks, c_.vs, c_.max, c_.flags, "rnd"));
		ASSERT_TRUE(p_) << where("create");
		int nops = std::max<int>(3000, 8 * static_cast<int>(c_.max));
		for (op_ = 0; op_ < nops && ok_; op_++) {
			if (is_hash(c_.type))
				hash_op();
			else
				array_op();
			if (ok_ && op_ % 250 == 249)
				walk();
		}
		if (ok_)
			walk();
		if (ok_ && (c_.flags & F_MMAPABLE))
			mmap_compare();
		std::string st;
		for (auto &[k, n] : stats_)
			if (k.rfind("LOOKUP_ELEM:OK", 0) != 0 || !is_hash(c_.type))
				st += " " + k + "=" + std::to_string(n);
		if (is_hash(c_.type))
			st += " max_elements=" + std::to_string(max_size_);
		printf("[kernel_diff] %s: %d ops, %s, seed %llu (%s); kernel results:%s\n",
		       cfg_name(c_).c_str(), op_, ok_ ? "all matched" : "STOPPED at first mismatch",
		       static_cast<unsigned long long>(seed_), seed_str().c_str(), st.c_str());
	}

private:
	Cfg c_;
	uint64_t seed_, salt_;
	std::mt19937_64 rng_;
	Pair p_;
	int op_ = 0;
	bool ok_ = true;
	uint32_t domain_ = 0, seq_ = 0;
	std::map<Bytes, Bytes> hmodel_;
	std::map<std::string, int> stats_; // kernel results per command, to show coverage
	size_t max_size_ = 0;		   // the most elements the hash held
	std::vector<Bytes> amodel_;

	std::string where(const std::string &what) const
	{
		std::ostringstream o;
		o << cfg_name(c_) << " op#" << op_ << " " << what << " (" << seed_str() << ")";
		return o.str();
	}
	uint32_t rnd(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }
	bool coin(uint32_t pct) { return rnd(100) < pct; }

	Bytes hkey(uint32_t k) const
	{
		Bytes b(c_.ks);
		for (uint32_t i = 0; i < c_.ks; i++)
			b[i] = i < 4 ? static_cast<uint8_t>((k >> (8 * i)) ^ (salt_ >> (8 * i)))
				     : static_cast<uint8_t>((salt_ >> (8 * (i % 8))) ^
							    (k * 0x9d + i * 13));
		return b;
	}
	Bytes rvalue()
	{
		Bytes v(value_bytes(c_.type, c_.vs)); // with per-CPU padding: the kernel keeps it
		for (auto &x : v)
			x = static_cast<uint8_t>(rng_());
		return v;
	}
	Bytes pick_hash_key()
	{
		if (!hmodel_.empty() && coin(45)) {
			auto it = hmodel_.begin();
			std::advance(it, rnd(static_cast<uint32_t>(hmodel_.size())));
			return it->first;
		}
		return hkey(rnd(domain_));
	}
	uint64_t pick_update_flags(bool fill = false)
	{
		uint32_t r = rnd(100);
		if (r < (fill ? 50 : 45))
			return U_ANY;
		if (r < (fill ? 85 : 70))
			return U_NOEXIST;
		if (r < (fill ? 93 : 92))
			return U_EXIST;
		static const uint64_t bad[] = {
			3, 4, 5, 6, 7, 8, 16, uint64_t{1} << 32, uint64_t{1} << 63};
		return bad[rnd(sizeof(bad) / sizeof(bad[0]))];
	}

	// Run and compare; false (and stop) on a mismatch.
	bool same(const std::string &what, const Req &q, Both *out)
	{
		bool s;
		*out = check(where(what), q, {}, &s);
		stats_[std::string(cmd_name(q.cmd)).substr(q.cmd == C_OBJ_GET_INFO ? 0 : 4) + ":" +
		       errname(out->k.err)]++;
		if (!s)
			ok_ = false;
		return s;
	}
	void model_fail(const std::string &what, const std::string &detail)
	{
		ADD_FAILURE() << "TEST MODEL disagrees with the kernel [" << where(what)
			      << "]: " << detail;
		ok_ = false;
	}
	static const Bytes &outb(const Req &q, const Res &r) { return r.bufs[out_buf(q)]; }

	// ---- HASH ----

	void hash_op()
	{
		// Alternate phases: fill (to get the map full, for E2BIG) and drain.
		int phase_len = std::max<int>(750, 4 * static_cast<int>(c_.max));
		bool fill = (op_ / phase_len) % 2 == 0;
		uint32_t r = rnd(100);
		// fill: update 60, lookup 15, delete 2, gnk 12, lad 2, special 9
		// drain: update 20, lookup 20, delete 20, gnk 15, lad 15, special 10
		static const uint32_t fill_cut[] = {60, 75, 77, 89, 91},
				      drain_cut[] = {20, 40, 60, 75, 90};
		const uint32_t *cut = fill ? fill_cut : drain_cut;
		// While filling, most updates walk the key domain in order.
		Bytes key =
			fill && r < cut[0] && coin(70) ? hkey(seq_++ % domain_) : pick_hash_key();
		bool present = hmodel_.count(key);
		Both b;
		if (r < cut[0]) {
			Bytes v = rvalue();
			uint64_t f = pick_update_flags(fill);
			EA a;
			a.key = &key;
			a.val = &v;
			a.flags = f;
			Req q = elem_req(p_, C_UPDATE, a);
			if (!same("UPDATE flags " + std::to_string(f) + " key " + hex(key), q, &b))
				return;
			int want = (f & ~U_LOCK) > U_EXIST || (f & U_LOCK) ? EINVAL
				   : present && f == U_NOEXIST		   ? EEXIST
				   : !present && f == U_EXIST		   ? ENOENT
				   : !present && hmodel_.size() >= c_.max  ? E2BIG
									   : 0;
			if (b.k.err != want)
				return model_fail("UPDATE", "expected " + errname(want) +
								    ", kernel " + errname(b.k.err));
			if (!want)
				hmodel_[key] = v;
			max_size_ = std::max(max_size_, hmodel_.size());
		} else if (r < cut[1]) {
			EA a;
			a.key = &key;
			Req q = elem_req(p_, C_LOOKUP, a);
			if (!same("LOOKUP key " + hex(key), q, &b))
				return;
			expect_value("LOOKUP", q, b, key);
		} else if (r < cut[2]) {
			EA a;
			a.key = &key;
			Req q = elem_req(p_, C_DELETE, a);
			if (!same("DELETE key " + hex(key), q, &b))
				return;
			if ((b.k.ret == 0) != present)
				return model_fail("DELETE", "kernel " + errname(b.k.err));
			hmodel_.erase(key);
		} else if (r < cut[3]) {
			hash_gnk(key);
		} else if (r < cut[4]) {
			EA a;
			a.key = &key;
			Req q = elem_req(p_, C_LOOKUP_AND_DELETE, a);
			if (!same("LOOKUP_AND_DELETE key " + hex(key), q, &b))
				return;
			expect_value("LOOKUP_AND_DELETE", q, b, key);
			hmodel_.erase(key);
		} else {
			hash_special(key, present);
		}
	}

	void expect_value(const std::string &what, const Req &q, const Both &b, const Bytes &key)
	{
		auto it = hmodel_.find(key);
		if ((b.k.ret == 0) != (it != hmodel_.end()))
			return model_fail(what, "kernel " + errname(b.k.err));
		if (b.k.ret == 0 &&
		    !std::equal(it->second.begin(), it->second.end(), outb(q, b.k).begin()))
			model_fail(what, "kernel value " + hex(outb(q, b.k)) + " model " +
						 hex(it->second));
	}

	// One side's get_next_key from key (nullptr: NULL).
	Res gnk_side(bool kernel, const Bytes *key, Req *qout = nullptr)
	{
		EA a;
		a.key = key;
		a.keyp = key ? Ptr::BUF : Ptr::NUL;
		Req q = elem_req(p_, C_GET_NEXT_KEY, a);
		if (qout)
			*qout = q;
		return run_side(kernel, q);
	}

	// Hash iteration order is the implementation's own: check each side's answer against
	// the model, and compare what is comparable.
	void hash_gnk(const Bytes &key)
	{
		uint32_t mode = rnd(3); // 0: NULL key, 1: the chosen key, 2: an absent key
		Bytes k = key;
		if (mode == 2)
			for (uint32_t tries = 0; tries < 8 && hmodel_.count(k); tries++)
				k = hkey(domain_ + rnd(1000)); // outside the domain: never present
		bool present = mode != 0 && hmodel_.count(k);
		std::string what = std::string("GET_NEXT_KEY ") + (mode == 0 ? "NULL" : hex(k)) +
				   (present ? " (present)"
				    : mode  ? " (absent)"
					    : "");
		Req q(C_GET_NEXT_KEY);
		Res kr = gnk_side(true, mode ? &k : nullptr, &q);
		Res ur = gnk_side(false, mode ? &k : nullptr);
		Both b{kr, ur};
		if (!present) {
			// NULL or absent key: the first key, or ENOENT on an empty map. Both the same
			// in class; the key itself is each side's own first key.
			bool kok = kr.ret == 0, uok = ur.ret == 0;
			if (kok != uok || kr.err != ur.err) {
				ADD_FAILURE() << "MISMATCH [" << where(what) << "] result: kernel "
					      << res_str(kr) << ", bpfmap " << res_str(ur)
					      << "\n    " << describe(q);
				ok_ = false;
				return;
			}
			if (kok != !hmodel_.empty())
				return model_fail(what, "kernel " + errname(kr.err));
			if (kok) {
				check_member(what, true, q, kr);
				check_member(what, false, q, ur);
				// The same as that side's NULL-key answer.
				Req qn(C_GET_NEXT_KEY);
				Res kn = gnk_side(true, nullptr, &qn),
				    un = gnk_side(false, nullptr);
				const Bytes &kfirst = kn.bufs[out_buf(qn)],
					    &ufirst = un.bufs[out_buf(qn)];
				if (kfirst != kr.bufs[out_buf(q)])
					model_fail(what,
						   "kernel: absent key did not give the first key");
				if (ufirst != ur.bufs[out_buf(q)]) {
					ADD_FAILURE()
						<< "MISMATCH [" << where(what)
						<< "] bpfmap: an absent key gave "
						<< hex(ur.bufs[out_buf(q)])
						<< " but a NULL key gives " << hex(ufirst)
						<< " (the kernel restarts from the first key)";
					ok_ = false;
				}
			}
			return;
		}
		// Present key: either another present key, or ENOENT (last key). With one key,
		// always ENOENT.
		for (bool kernel : {true, false}) {
			const Res &r = kernel ? kr : ur;
			if (r.ret != 0 && r.err != ENOENT) {
				ADD_FAILURE() << "MISMATCH [" << where(what) << "] "
					      << (kernel ? "kernel" : "bpfmap") << " " << res_str(r)
					      << ", other side " << res_str(kernel ? ur : kr);
				ok_ = false;
				return;
			}
			if (r.ret == 0) {
				check_member(what, kernel, q, r);
				if (Bytes(r.bufs[out_buf(q)].begin(),
					  r.bufs[out_buf(q)].begin() + c_.ks) == k) {
					ADD_FAILURE() << "[" << where(what) << "] "
						      << (kernel ? "kernel" : "bpfmap")
						      << " returned the same key";
					ok_ = false;
				}
			}
		}
		if (hmodel_.size() == 1 && (kr.ret == 0 || ur.ret == 0)) {
			ADD_FAILURE() << "MISMATCH [" << where(what) << "] one-key map: kernel "
				      << res_str(kr) << ", bpfmap " << res_str(ur);
			ok_ = false;
		}
	}

	void check_member(const std::string &what, bool kernel, const Req &q, const Res &r)
	{
		const Bytes &o = r.bufs[out_buf(q)];
		Bytes nk(o.begin(), o.begin() + c_.ks);
		bool tail_ok = std::all_of(o.begin() + c_.ks, o.end(),
					   [](uint8_t x) { return x == SENTINEL; });
		if (!hmodel_.count(nk) || !tail_ok) {
			std::string m = std::string(kernel ? "kernel" : "bpfmap") + " next key " +
					hex(o) + " is not a key of the map or wrote past key_size";
			if (kernel)
				model_fail(what, m);
			else {
				ADD_FAILURE() << "MISMATCH [" << where(what) << "] " << m;
				ok_ = false;
			}
		}
	}

	void hash_special(const Bytes &key, bool present)
	{
		Both b;
		Bytes v = rvalue();
		switch (rnd(10)) {
		case 0: { // update with a NULL key or value
			EA a;
			a.key = &key;
			a.val = &v;
			a.flags = pick_update_flags();
			if (coin(50))
				a.keyp = Ptr::NUL;
			else
				a.valp = Ptr::NUL;
			same("UPDATE NULL ptr", elem_req(p_, C_UPDATE, a), &b);
			break;
		}
		case 1: { // lookup into NULL
			EA a;
			a.key = &key;
			a.valp = Ptr::NUL;
			same("LOOKUP value NULL", elem_req(p_, C_LOOKUP, a), &b);
			break;
		}
		case 2: { // lookup with flags
			EA a;
			a.key = &key;
			a.flags = coin(50) ? U_LOCK : (uint64_t{1} << rnd(64));
			same("LOOKUP flags", elem_req(p_, C_LOOKUP, a), &b);
			break;
		}
		case 3: { // lookup_and_delete into NULL: the element is deleted anyway
			EA a;
			a.key = &key;
			a.valp = Ptr::NUL;
			if (!same("LOOKUP_AND_DELETE value NULL",
				  elem_req(p_, C_LOOKUP_AND_DELETE, a), &b))
				return;
			if (b.k.err != (present ? EFAULT : ENOENT))
				return model_fail("LOOKUP_AND_DELETE value NULL",
						  "kernel " + errname(b.k.err));
			hmodel_.erase(key);
			break;
		}
		case 4: { // lookup_and_delete with flags
			EA a;
			a.key = &key;
			a.flags = coin(50) ? U_LOCK : (uint64_t{1} << rnd(64));
			same("LOOKUP_AND_DELETE flags", elem_req(p_, C_LOOKUP_AND_DELETE, a), &b);
			break;
		}
		case 5: { // delete NULL key
			EA a;
			a.keyp = Ptr::NUL;
			same("DELETE key NULL", elem_req(p_, C_DELETE, a), &b);
			break;
		}
		case 6: { // get_next_key from NULL into NULL
			EA a;
			a.keyp = Ptr::NUL;
			a.valp = Ptr::NUL;
			same("GET_NEXT_KEY NULL/NULL", elem_req(p_, C_GET_NEXT_KEY, a), &b);
			break;
		}
		case 7: { // get_next_key with flags
			EA a;
			a.key = &key;
			a.poke = {{E_FLAGS + rnd(8), static_cast<uint8_t>(1 + rnd(255))}};
			same("GET_NEXT_KEY flags", elem_req(p_, C_GET_NEXT_KEY, a), &b);
			break;
		}
		case 8: { // delete with a value pointer or flags
			EA a;
			a.key = &key;
			a.poke = {{static_cast<size_t>(E_VALUE + rnd(16)),
				   static_cast<uint8_t>(1 + rnd(255))}};
			same("DELETE value/flags set", elem_req(p_, C_DELETE, a), &b);
			break;
		}
		default: { // a bad key pointer
			EA a;
			a.keyp = Ptr::BAD;
			a.val = &v;
			int cmds[] = {C_LOOKUP, C_UPDATE, C_DELETE, C_GET_NEXT_KEY,
				      C_LOOKUP_AND_DELETE};
			int cmd = cmds[rnd(5)];
			same(std::string(cmd_name(cmd)) + " key 0x10", elem_req(p_, cmd, a), &b);
			break;
		}
		}
	}

	// ---- ARRAY ----

	Bytes pick_index()
	{
		static const uint32_t out[] = {0, 0, 0, 0x80000000u, 0xffffffffu};
		uint32_t i;
		if (coin(90))
			i = rnd(c_.max);
		else {
			i = out[rnd(5)];
			if (i == 0)
				i = c_.max + rnd(3);
		}
		return u32key(i);
	}

	void array_op()
	{
		Bytes key = pick_index();
		uint32_t idx;
		memcpy(&idx, key.data(), 4);
		uint32_t r = rnd(100);
		Both b;
		if (r < 35) {
			Bytes v = rvalue();
			EA a;
			a.key = &key;
			a.val = &v;
			a.flags = pick_update_flags();
			if (coin(2))
				a.keyp = Ptr::NUL;
			else if (coin(2))
				a.valp = Ptr::NUL;
			Req q = elem_req(p_, C_UPDATE, a);
			if (!same("UPDATE flags " + std::to_string(a.flags) + " idx " +
					  std::to_string(idx),
				  q, &b))
				return;
			if (b.k.ret == 0) {
				if (idx >= c_.max)
					return model_fail("UPDATE",
							  "kernel accepted an out-of-range index");
				amodel_[idx] = v;
			}
		} else if (r < 60) {
			EA a;
			a.key = &key;
			if (coin(3))
				a.valp = Ptr::NUL;
			if (coin(3))
				a.flags = uint64_t{1} << rnd(64);
			Req q = elem_req(p_, C_LOOKUP, a);
			if (!same("LOOKUP idx " + std::to_string(idx), q, &b))
				return;
			if (b.k.ret == 0 && !std::equal(amodel_[idx].begin(), amodel_[idx].end(),
							outb(q, b.k).begin()))
				model_fail("LOOKUP", "kernel value differs from the model");
		} else if (r < 70) {
			EA a;
			a.key = &key;
			if (coin(5))
				a.keyp = Ptr::NUL;
			same("DELETE idx " + std::to_string(idx), elem_req(p_, C_DELETE, a), &b);
		} else if (r < 90) {
			EA a;
			a.key = &key;
			if (coin(20))
				a.keyp = Ptr::NUL;
			if (coin(3))
				a.valp = Ptr::NUL;
			if (coin(3))
				a.poke = {{E_FLAGS, 1}};
			same("GET_NEXT_KEY idx " + std::to_string(idx),
			     elem_req(p_, C_GET_NEXT_KEY, a), &b);
		} else {
			EA a;
			a.key = &key;
			if (coin(10))
				a.valp = Ptr::NUL;
			if (coin(10))
				a.flags = U_LOCK;
			same("LOOKUP_AND_DELETE idx " + std::to_string(idx),
			     elem_req(p_, C_LOOKUP_AND_DELETE, a), &b);
		}
	}

	// ---- whole-map comparison ----

	// Walk one side with get_next_key from NULL until ENOENT.
	bool walk_side(bool kernel, std::vector<Bytes> *keys)
	{
		Bytes cur;
		size_t limit = (is_hash(c_.type) ? hmodel_.size() : c_.max) + 2;
		for (size_t i = 0; i <= limit; i++) {
			Req q(C_GET_NEXT_KEY);
			Res r = gnk_side(kernel, i ? &cur : nullptr, &q);
			if (r.ret != 0) {
				if (r.err == ENOENT)
					return true;
				ADD_FAILURE() << "[" << where("walk") << "] "
					      << (kernel ? "kernel" : "bpfmap")
					      << " get_next_key failed: " << res_str(r);
				return false;
			}
			const Bytes &o = r.bufs[out_buf(q)];
			cur.assign(o.begin(), o.begin() + c_.ks);
			keys->push_back(cur);
		}
		ADD_FAILURE() << "[" << where("walk") << "] " << (kernel ? "kernel" : "bpfmap")
			      << " get_next_key did not end after " << limit << " keys";
		return false;
	}

	void walk()
	{
		std::vector<Bytes> kk, uk;
		if (!walk_side(true, &kk) || !walk_side(false, &uk)) {
			ok_ = false;
			return;
		}
		if (is_hash(c_.type)) {
			std::set<Bytes> ks(kk.begin(), kk.end()), us(uk.begin(), uk.end()), ms;
			for (auto &[k, v] : hmodel_)
				ms.insert(k);
			if (ks.size() != kk.size() || ks != ms)
				return model_fail("walk",
						  "kernel walk gave " + std::to_string(kk.size()) +
							  " keys (" + std::to_string(ks.size()) +
							  " distinct), model has " +
							  std::to_string(ms.size()));
			if (us.size() != uk.size() || us != ks) {
				std::string extra, missing;
				for (auto &k : us)
					if (!ks.count(k))
						extra += " " + hex(k);
				for (auto &k : ks)
					if (!us.count(k))
						missing += " " + hex(k);
				ADD_FAILURE() << "MISMATCH [" << where("walk")
					      << "] key sets differ: kernel " << kk.size()
					      << " keys, bpfmap " << uk.size() << " keys ("
					      << us.size() << " distinct); bpfmap extra:" << extra
					      << "; bpfmap missing:" << missing;
				ok_ = false;
				return;
			}
			for (auto &k : ks) {
				EA a;
				a.key = &k;
				Both b;
				Req q = elem_req(p_, C_LOOKUP, a);
				if (!same("walk LOOKUP " + hex(k), q, &b))
					return;
			}
		} else {
			if (kk != uk) {
				ADD_FAILURE() << "MISMATCH [" << where("walk")
					      << "] array key order differs: kernel " << kk.size()
					      << " keys, bpfmap " << uk.size();
				ok_ = false;
				return;
			}
			if (kk.size() != c_.max)
				return model_fail("walk", "kernel array walk gave " +
								  std::to_string(kk.size()));
			for (uint32_t i = 0; i < c_.max; i++) {
				Bytes k = u32key(i);
				EA a;
				a.key = &k;
				Both b;
				if (!same("walk LOOKUP idx " + std::to_string(i),
					  elem_req(p_, C_LOOKUP, a), &b))
					return;
			}
		}
	}

	void mmap_compare()
	{
		size_t stride = (c_.vs + 7) / 8 * 8;
		size_t len = (c_.max * stride + PAGE - 1) / PAGE * PAGE;
		void *km = mmap(nullptr, len, PROT_READ, MAP_SHARED, p_.k, 0);
		void *um = mmap(nullptr, len, PROT_READ, MAP_SHARED, p_.u, 0);
		if (km == MAP_FAILED || um == MAP_FAILED) {
			ADD_FAILURE() << "[" << where("mmap") << "] mmap: kernel "
				      << (km == MAP_FAILED ? "failed" : "ok") << ", bpfmap "
				      << (um == MAP_FAILED ? "failed" : "ok");
		} else {
			auto *a = static_cast<const uint8_t *>(km);
			auto *b = static_cast<const uint8_t *>(um);
			for (size_t i = 0; i < len; i++)
				if (a[i] != b[i]) {
					ADD_FAILURE() << "MISMATCH [" << where("mmap") << "] byte "
						      << i << " of the mapping: kernel "
						      << int(a[i]) << ", bpfmap " << int(b[i]);
					break;
				}
		}
		if (km != MAP_FAILED)
			munmap(km, len);
		if (um != MAP_FAILED)
			munmap(um, len);
	}
};

TEST_P(RandomOps, MatchesKernel)
{
	Runner r(GetParam());
	r.run();
}

std::string param_name(const ::testing::TestParamInfo<Cfg> &i) { return cfg_name(i.param); }

INSTANTIATE_TEST_SUITE_P(Hash, RandomOps, ::testing::ValuesIn(random_cfgs(T_HASH)), param_name);
INSTANTIATE_TEST_SUITE_P(Array, RandomOps, ::testing::ValuesIn(random_cfgs(T_ARRAY)), param_name);
INSTANTIATE_TEST_SUITE_P(PercpuHash, RandomOps, ::testing::ValuesIn(percpu_cfgs(T_PERCPU_HASH)),
			 param_name);
INSTANTIATE_TEST_SUITE_P(PercpuArray, RandomOps, ::testing::ValuesIn(percpu_cfgs(T_PERCPU_ARRAY)),
			 param_name);

} // namespace
} // namespace kernel_diff
