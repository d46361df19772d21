// OBJ_PIN and OBJ_GET: pins are hard links to a map's region file under the pin root,
// which stands in for bpffs. /sys/fs/bpf/<p> means <pin root>/<p>; any path already under
// the pin root is taken as is; anything else is "not bpffs". Paths below the root are
// reached through the checked, open root (core/pin_root.h), never through a symlink.
#pragma once

#include <string>

#include "uapi/bpf_uapi.h"

namespace bpfmap {

// bad_tail: the command's unused attr bytes were not zero.
long obj_pin(const uapi::obj_attr &attr, bool bad_tail);
long obj_get(const uapi::obj_attr &attr, bool bad_tail);

// The path below the pin root that an absolute path at or under /sys/fs/bpf stands for
// ("" for /sys/fs/bpf itself); false for any other path.
bool bpffs_rel(const char *path, std::string *rel);

} // namespace bpfmap
