/* Makes a hash map described by BTF (u32 key, struct pair { u32 lo, hi; } value) with one
 * element, the way libbpf users do, and pins it at argv[1]: bpftool_test.sh then has
 * bpftool pretty-print it from the BTF. */
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	struct btf *btf = btf__new_empty();
	int u32 = btf__add_int(btf, "unsigned int", 4, 0);
	int pair = btf__add_struct(btf, "pair", 8);
	btf__add_field(btf, "lo", u32, 0, 0);
	btf__add_field(btf, "hi", u32, 32, 0);
	if (btf__load_into_kernel(btf)) {
		perror("btf load");
		return 1;
	}
	LIBBPF_OPTS(bpf_map_create_opts, opts, .btf_fd = btf__fd(btf), .btf_key_type_id = u32,
		    .btf_value_type_id = pair);
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "btf_map", 4, 8, 8, &opts);
	unsigned key = 7, value[2] = {1, 2};
	if (fd < 0 || bpf_map_update_elem(fd, &key, value, 0) || bpf_obj_pin(fd, argv[1])) {
		perror("map");
		return 1;
	}
	return 0;
}
