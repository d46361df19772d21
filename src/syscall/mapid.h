// Machine-wide map ids: MAP_GET_NEXT_ID and MAP_GET_FD_BY_ID across every process that
// shares the pin root.
//
// Each map's region file gets one more hard link, <pin root>/.bpfmap-by-id/<id>, made at
// create. Whoever holds the map holds a shared flock() on the open file behind its fd:
// the creator's fd, fds from OBJ_GET and MAP_GET_FD_BY_ID, and with them every dup, fork
// child and fd passed over a socket, since they share that open file. A process that dies
// drops its locks with its fds. A map is gone when nobody holds a lock and no pin is left
// (the id link is the file's only link): the id link is then removed, by the last closer
// in this process or by the next id walk in any process, and the memory goes with it.
// Program-side handles (bpfmap_map_get) keep the map's memory but not its id visible once
// every fd of the map is closed.
#pragma once

#include <cstdint>

#include "uapi/bpf_uapi.h"

namespace bpfmap {

// Register a new map's fd under its id. Maps outside the pin root (memfd) get no id link.
void map_id_publish(int fd, uint32_t id);

// Mark fd, a new fd of an existing map, as holding the map.
void map_id_hold(int fd);

// Remove the id link of a map that nobody holds any more. True if it was removed (or
// did not exist).
bool map_id_reap(uint32_t id);

long map_get_next_id(uapi::id_attr &attr, bool bad_tail);
long map_get_fd_by_id(const uapi::id_attr &attr, bool bad_tail);

} // namespace bpfmap
