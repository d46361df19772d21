// The peer in map_bench's hash rows: boost::unordered_flat_map (Boost 1.81 or later), an
// open-addressing table of the Swiss-table kind, single-threaded and process-private. It
// gets the bench's keys and values as fixed-size byte arrays, XXH3 as its hash (the hash
// bpfmap uses, declared avalanching so the table adds no mixing of its own), and room for
// every key up front. A lookup copies the value out, as bpfmap_bpf does.
//
// It answers "how fast can a lookup at this size be on this machine at all": the timed loops
// are map_bench's, so the rows compare directly with the copy and ptr paths.
#pragma once

#ifdef BPFMAP_BENCH_BOOST

#include <benchmark/benchmark.h>
#include <boost/unordered/unordered_flat_map.hpp>

#include <array>
#include <cstring>
#include <memory>

#define XXH_INLINE_ALL
#include <xxhash.h>

class peer_map {
public:
	virtual ~peer_map() = default;
	// Timed loops over keys[0..n) (key_size bytes each), cycling; false if a key is absent.
	virtual bool lookup(benchmark::State &state, const unsigned char *keys, size_t n,
			    unsigned char *out) = 0;
	virtual bool update(benchmark::State &state, const unsigned char *keys, size_t n,
			    unsigned char *value) = 0;
};

template <size_t KS, size_t VS> class flat_peer final : public peer_map {
	using key_type = std::array<unsigned char, KS>;
	using value_type = std::array<unsigned char, VS>;
	struct xxh3 {
		using is_avalanching = void;
		size_t operator()(const key_type &k) const { return XXH3_64bits(k.data(), KS); }
	};

	static key_type key_at(const unsigned char *keys, size_t i)
	{
		key_type k;
		memcpy(k.data(), keys + i * KS, KS);
		return k;
	}

	boost::unordered_flat_map<key_type, value_type, xxh3> map_;

public:
	flat_peer(const unsigned char *keys, size_t n, const unsigned char *value)
	{
		value_type v;
		memcpy(v.data(), value, VS);
		map_.reserve(n);
		for (size_t i = 0; i < n; i++)
			map_.emplace(key_at(keys, i), v);
		// Warmed up as map_bench warms the bpfmap map: fresh memory is slow at first here.
		size_t found = 0;
		for (int pass = 0; pass < 3; pass++)
			for (size_t i = 0; i < n; i++)
				found += map_.count(key_at(keys, i));
		benchmark::DoNotOptimize(found);
	}

	bool lookup(benchmark::State &state, const unsigned char *keys, size_t n,
		    unsigned char *out) override
	{
		size_t i = 0;
		for (auto _ : state) {
			auto it = map_.find(key_at(keys, i));
			if (__builtin_expect(it == map_.end(), 0))
				return false;
			memcpy(out, it->second.data(), VS);
			benchmark::DoNotOptimize(out);
			benchmark::ClobberMemory();
			if (++i == n)
				i = 0;
		}
		return true;
	}

	bool update(benchmark::State &state, const unsigned char *keys, size_t n,
		    unsigned char *value) override
	{
		size_t i = 0;
		value_type v;
		memcpy(v.data(), value, VS);
		for (auto _ : state) {
			v[0]++;
			map_.insert_or_assign(key_at(keys, i), v);
			if (++i == n)
				i = 0;
		}
		return true;
	}
};

// A peer for these sizes, or nullptr where the bench has none.
inline std::unique_ptr<peer_map> make_peer(uint32_t key_size, uint32_t value_size,
					   const unsigned char *keys, size_t n,
					   const unsigned char *value)
{
	if (key_size == 4 && value_size == 8)
		return std::make_unique<flat_peer<4, 8>>(keys, n, value);
	if (key_size == 16 && value_size == 64)
		return std::make_unique<flat_peer<16, 64>>(keys, n, value);
	return nullptr;
}

#endif
