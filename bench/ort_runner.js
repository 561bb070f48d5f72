// ONNX Runtime anchor for bench/bench_forward.py (CPU execution provider of npm onnxruntime-node,
// installed into bench/node_modules by tools/bench_deps.sh).
//
// usage: node bench/ort_runner.js MODEL.onnx THREADS RUNS WARMUP [SIZE=224]
//
// Session: intraOpNumThreads = THREADS, interOpNumThreads = 1, sequential execution, graph
// optimisation level "all". Times RUNS session.run calls after WARMUP ones on the benchmark's
// deterministic input (the pattern of bench/bench_forward.c) and prints one line "json {...}":
// every timed run (ms) and its start (CLOCK_MONOTONIC ms), process CPU time of the timed runs, RSS before the session was created,
// a summary of the output (n, sum, L2, first 8 values) and the onnxruntime-node version.
'use strict';
const fs = require('fs');

function rssKb(key) {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp('^' + key + ':\\s+(\\d+)', 'm'));
  return m ? Number(m[1]) : 0;
}

function makeInput(size) {
  const n = 3 * size * size, x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (Math.imul(i, 2654435761 | 0) >>> 0) % 1000 / 500 - 1;
  return x;
}

async function main() {
  const [model, threadsS, runsS, warmupS, sizeS] = process.argv.slice(2);
  if (!model) { console.error('usage: ort_runner.js MODEL.onnx THREADS RUNS WARMUP [SIZE]'); process.exit(1); }
  const threads = Number(threadsS || 1), runs = Number(runsS || 20), warmup = Number(warmupS || 3), size = Number(sizeS || 224);
  const ort = require('onnxruntime-node');
  const version = require('onnxruntime-node/package.json').version;
  const base = rssKb('VmRSS');
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const feeds = {};
  feeds[sess.inputNames[0]] = new ort.Tensor('float32', makeInput(size), [1, 3, size, size]);
  const outName = sess.outputNames[0];
  let out;
  for (let i = 0; i < warmup; i++) out = await sess.run(feeds);
  const times = [], starts = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    out = await sess.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    starts.push(Number(t0) / 1e6); // CLOCK_MONOTONIC ms, as the orchestrator's samples
  }
  const c1 = process.cpuUsage(c0);
  const y = out[outName].data;
  let sum = 0, l2 = 0;
  for (let i = 0; i < y.length; i++) { sum += y[i]; l2 += y[i] * y[i]; }
  console.log('json ' + JSON.stringify({
    times, starts, cpu_ms: (c1.user + c1.system) / 1e3, threads, rss_base_kb: base, vmhwm_kb: rssKb('VmHWM'),
    out: { n: y.length, sum, l2: Math.sqrt(l2), head: Array.from(y.slice(0, 8)) },
    version,
  }));
  if (sess.release) await sess.release();
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(2); });
