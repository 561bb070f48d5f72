// ONNX Runtime's own time per node, to set beside build/bench_layers (imret's per-convolution
// times) layer by layer: same session options as bench/ort_runner.js, with ORT's profiler on.
//
// usage: node bench/ort_profile.js MODEL.onnx [THREADS=1] [RUNS=30] [SIZE=224]
//        (models: build/bench_models/*_full.onnx, made by `make bench-forward`)
//
// Prints, in execution order, each node's median kernel time over the runs after the first 5
// (ms), its operator, and the sum. ORT fuses BN and ReLU (and the residual add) into its Conv
// nodes, as imret does, so the Conv rows line up with bench_layers' rows.
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');

async function main() {
  const [model, threadsS, runsS, sizeS] = process.argv.slice(2);
  if (!model) { console.error('usage: ort_profile.js MODEL.onnx [THREADS=1] [RUNS=30] [SIZE=224]'); process.exit(2); }
  const threads = Number(threadsS || 1), runs = Number(runsS || 30), size = Number(sizeS || 224);
  if (!(runs > 5)) { console.error('ort_profile.js: RUNS must be more than 5'); process.exit(2); }
  const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ortprof-'));
  try {
    await profile(ort, model, threads, runs, size, dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function profile(ort, model, threads, runs, size, dir) {
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all', enableProfiling: true, profileFilePrefix: path.join(dir, 'p'),
  });
  const x = new Float32Array(3 * size * size);
  for (let i = 0; i < x.length; i++) x[i] = (Math.imul(i, 2654435761 | 0) >>> 0) % 1000 / 500 - 1;
  const feeds = {};
  feeds[sess.inputNames[0]] = new ort.Tensor('float32', x, [1, 3, size, size]);
  for (let i = 0; i < runs; i++) await sess.run(feeds);
  const file = sess.endProfiling();
  const prof = JSON.parse(fs.readFileSync(fs.existsSync(file) ? file : path.join(dir, fs.readdirSync(dir)[0]), 'utf8'));
  const per = new Map();
  for (const e of prof) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const name = e.name.slice(0, -'_kernel_time'.length);
    if (!per.has(name)) per.set(name, { op: (e.args && e.args.op_name) || '?', t: [] });
    per.get(name).t.push(e.dur / 1000);
  }
  let total = 0, i = 0;
  console.log(`# ${model}, ${size}x${size}, ${threads} thread(s), onnxruntime-node ${require(path.join(__dirname, 'node_modules', 'onnxruntime-node', 'package.json')).version}, median of ${runs - 5} runs (ms)`);
  for (const [name, v] of per) {
    const t = v.t.slice(5).sort((a, b) => a - b), med = t[Math.floor(t.length / 2)];
    total += med;
    console.log(`${String(i++).padEnd(4)} ${v.op.padEnd(18)} ${med.toFixed(3).padStart(8)}  ${name}`);
  }
  console.log(`total                   ${total.toFixed(3).padStart(8)}`);
}
main().catch((e) => { console.error('ort_profile.js: ' + e.message); process.exit(1); });
