// Runs one job on MicroPython's official WebAssembly port (wasm32: 31-bit small ints, 4-byte
// pointers), for sim/wasm32.py. The job comes as JSON on stdin:
//   {"heap": bytes, "pystack": bytes, "files": [[vm_path, host_path], ...], "path": [vm_dir, ...],
//    "steps": ["code", ...]}
// Files are copied into the port's in-memory filesystem (MEMFS: it has no other). Each step runs
// as one top-level call; the program's stdout goes to stdout; a Python exception's traceback goes
// to stderr with exit status 1. After each step the live heap is measured and written to stderr
// as `HEAP <bytes in use> <heap total>`.
//
// Why between steps: this port's gc_collect() only marks a collection pending (the WebAssembly
// stack cannot be scanned for roots), and the collection runs when the next top-level call
// starts. Inside one call nothing is freed: garbage makes the heap grow, as a split heap
// (MICROPY_GC_SPLIT_HEAP_AUTO) whose first area is `heapsize`, by up to 128 MiB more (the
// "max new split" that gc.mem_free() adds in). Live-heap figures are therefore read here, at the
// top level, after a collection.
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const job = JSON.parse(readFileSync(0, "utf8"));
let sink = (data) => process.stdout.write(data);
const mp = await loadMicroPython({
  heapsize: job.heap,
  pystack: job.pystack,
  linebuffer: false,
  stdout: (data) => sink(data),
});

for (const [vmPath, hostPath] of job.files) {
  mp.FS.mkdirTree(dirname(vmPath));
  mp.FS.writeFile(vmPath, readFileSync(hostPath));
}

function quietly(code) {
  let text = "";
  const before = sink;
  sink = (data) => { text += Buffer.from(data).toString(); };
  try {
    mp.runPython(code);
  } finally {
    sink = before;
  }
  return text;
}

function liveHeap() {
  quietly("import gc\ngc.collect()");  // marks the collection pending
  const info = quietly("import micropython\nmicropython.mem_info()");  // which runs first, here
  const [, total, used] = /GC: total: (\d+), used: (\d+)/.exec(info);
  return `HEAP ${used} ${total}`;
}

mp.runPython(`import sys\nsys.path[:0] = ${JSON.stringify(job.path)}`);
for (const step of job.steps) {
  try {
    mp.runPython(step);
  } catch (err) {
    process.stderr.write(String(err.message ?? err) + "\n");
    process.exitCode = 1;
    break;
  }
  process.stderr.write(liveHeap() + "\n");
}
