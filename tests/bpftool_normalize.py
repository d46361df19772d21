"""bpftool output with what may differ between the kernel and bpfmap masked.

Map and BTF ids and memlock are each implementation's own. Between "## unordered" and
"## ordered" lines, a dump's elements come in hash order, which follows the kernel's
random seed: plain dumps are sorted as blocks that start at "key", JSON dumps as arrays.
The "pinned" lines of `bpftool -f` follow directory order and are sorted wherever they run.
Usage: bpftool_normalize.py <file> <pin dir>
"""
import json
import re
import sys


def masked(text, pins):
    text = text.replace(pins, "PINS")
    text = re.sub(r"(?m)^[0-9]+: ", "ID: ", text)
    text = re.sub(r'"id":[0-9]+', '"id":ID', text)
    text = re.sub(r"memlock [0-9]+B", "memlock NB", text)
    text = re.sub(r"btf_id [0-9]+", "btf_id N", text)
    return re.sub(r'"bytes_memlock":[0-9]+', '"bytes_memlock":N', text)


def sorted_blocks(lines):
    blocks = []
    for line in lines:
        if line.startswith("key") or not blocks:
            blocks.append([])
        blocks[-1].append(line)
    keyed = sorted(b for b in blocks if b[0].startswith("key"))
    return [line for b in keyed + [b for b in blocks if not b[0].startswith("key")] for line in b]


def main():
    text = masked(open(sys.argv[1]).read(), sys.argv[2])
    out, pending, unordered = [], [], False
    for line in text.split("\n"):
        if line in ("## unordered", "## ordered"):
            out += sorted_blocks(pending)
            pending, unordered = [], line == "## unordered"
        elif not unordered:
            out.append(line)
        elif line.startswith("[{"):
            out += sorted_blocks(pending)
            pending = []
            out.append(json.dumps(sorted(json.loads(line), key=json.dumps)))
        elif line.startswith(("Found", "Error", "rc=")):
            out += sorted_blocks(pending)
            pending = []
            out.append(line)
        else:
            pending.append(line)
    out += sorted_blocks(pending)
    print("\n".join(sorted_pinned_runs(out)))


def sorted_pinned_runs(lines):
    out, run = [], []
    for line in lines + [None]:
        if line is not None and line.startswith("\tpinned "):
            run.append(line)
            continue
        out += sorted(run)
        run = []
        if line is not None:
            out.append(line)
    return out


main()
