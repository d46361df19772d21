// Machine-wide object ids: MAP_GET_NEXT_ID / MAP_GET_FD_BY_ID for maps and
// BTF_GET_NEXT_ID / BTF_GET_FD_BY_ID for BTF objects, across every process that shares
// the pin root. Maps and BTF objects have id spaces of their own, as in the kernel.
//
// Each object's file gets one more hard link, <pin root>/<table dir>/<id>, made at
// create. Whoever holds the object holds a shared flock() on the open file behind its fd:
// the creator's fd, fds from OBJ_GET and *_GET_FD_BY_ID, and with them every dup, fork
// child and fd passed over a socket, since they share that open file. A process that dies
// drops its locks with its fds. An object is gone when nobody holds a lock and no other
// link is left (a pin, or for a BTF object, a map made with it): the id link is then
// removed, by the last closer in this process or by the next id walk in any process, and
// the memory goes with it. Program-side handles (bpfmap_map_get) keep a map's memory but
// not its id visible once every fd of the map is closed.
#pragma once

#include <cstdint>

#include "uapi/bpf_uapi.h"

namespace bpfmap {

enum class id_table { map, btf };

// Register a new object's fd under its id. Objects outside the pin root (memfd) get no
// id link.
void id_publish(id_table t, int fd, uint32_t id);

// Mark fd, a new fd of an existing object, as holding it.
void id_hold(int fd);

// Remove the id link of an object that nobody holds any more. True if it was removed (or
// did not exist).
bool id_reap(id_table t, uint32_t id);

// The smallest live id above attr.start_id, into attr.next_id; -ENOENT if none.
long id_get_next(id_table t, uapi::id_attr &attr);

// A new fd (access mode `mode`) of the live object with this id, holding it; -ENOENT.
int id_open(id_table t, uint32_t id, int mode);

// A link that keeps BTF object btf_id alive while map map_id lives (the kernel's map->btf
// reference); dropped when the map's id is reaped.
void btf_ref_by_map(int btf_fd, uint32_t btf_id, uint32_t map_id);

void map_id_publish(int fd, uint32_t id);
bool map_id_reap(uint32_t id);
long map_get_next_id(uapi::id_attr &attr, bool bad_tail);
long map_get_fd_by_id(const uapi::id_attr &attr, bool bad_tail);

} // namespace bpfmap
