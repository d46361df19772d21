// Kernel-differential tests of array maps: index edges.
#include "kernel_diff.h"

#include <cerrno>
#include <string>
#include <vector>

namespace kernel_diff {
namespace {

// ==== ARRAY edges ===================================================================

TEST_F(KernelDiff, ArrayEdges)
{
	for (uint32_t max : {1u, 2u, 7u}) {
		for (uint32_t flags : {0u, F_MMAPABLE}) {
			std::string t = "ARRAY max " + std::to_string(max) + " flags " +
					std::to_string(flags) + " ";
			Pair p = array_pair(t, 5, max, flags);
			ASSERT_TRUE(p);
			std::vector<uint8_t> v(5, 0x5c);
			for (uint32_t idx : {0u, max - 1, max, max + 1, 0x80000000u, 0xffffffffu}) {
				std::vector<uint8_t> key = u32key(idx);
				std::string kn = " idx " + std::to_string(idx);
				for (uint64_t f : {U_ANY, U_NOEXIST, U_EXIST, uint64_t{3}, U_LOCK,
						   uint64_t{1} << 32}) {
					EA a;
					a.key = &key;
					a.val = &v;
					a.flags = f;
					elem(t + "UPDATE flags " + std::to_string(f) + kn, p,
					     C_UPDATE, a);
				}
				EA a;
				a.key = &key;
				elem(t + "LOOKUP" + kn, p, C_LOOKUP, a);
				elem(t + "DELETE" + kn, p, C_DELETE, a);
				elem(t + "GET_NEXT_KEY" + kn, p, C_GET_NEXT_KEY, a);
				elem(t + "LOOKUP_AND_DELETE" + kn, p, C_LOOKUP_AND_DELETE, a);
				a.valp = Ptr::NUL;
				elem(t + "LOOKUP_AND_DELETE value NULL" + kn, p,
				     C_LOOKUP_AND_DELETE, a);
			}
			EA n;
			n.keyp = Ptr::NUL;
			elem(t + "GET_NEXT_KEY key NULL", p, C_GET_NEXT_KEY, n);
		}
	}
}

} // namespace
} // namespace kernel_diff
