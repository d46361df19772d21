// The dispatcher's internal entry: bpfmap_bpf() without errno, returning -errno.
#pragma once

namespace bpfmap {

long sys_bpf(int cmd, void *attr, unsigned int size);

} // namespace bpfmap
