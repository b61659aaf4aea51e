#!/usr/bin/env node
// The onnxruntime column of bench_embed: the ViT-B/32 image tower exported by
// bench/make_vit_b32.py, run with onnxruntime-node on the CPU.
//
//   node bench/ort_embed.js --cache DIR [--threads 2] [--reps32 3] [--reps1 10]
//
// Needs `npm install --no-save --ignore-scripts onnxruntime-node` in bench/ (node_modules is
// git-ignored; --ignore-scripts skips the package's download of GPU providers, the CPU provider
// ships in the package). Without it, prints {"error": ...} and exits 0.
//
// Session: intra-op threads --threads, inter-op 1, sequential execution, graph optimisation
// level "all" (onnxruntime's default for the CPU), everything else default. The input:
// images.u8 turned into floats once, before timing, as the other sides do it (x / 255, minus
// CLIP's mean, divided by CLIP's std, in float32). Then: batch 32 once, checked against
// reference.f32 (max |diff|, smallest row cosine) — it is also the warm-up — then --reps32 timed
// runs of batch 32, 2 warm-up runs of batch 1 (image 0) and --reps1 timed runs of it.
// Prints one JSON object; peak RSS is process.resourceUsage().maxRSS (KiB, as getrusage).
'use strict';
const fs = require('fs');
const path = require('path');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function fail(msg) {
  process.stdout.write(JSON.stringify({error: msg}) + '\n');
  process.exit(0);
}

let ort;
try {
  ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
} catch (e) {
  try {
    ort = require('onnxruntime-node');
  } catch (e2) {
    fail('onnxruntime-node is not installed (cd bench && npm install --no-save --ignore-scripts onnxruntime-node)');
  }
}

const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];

function readMeta(cache) {
  return JSON.parse(fs.readFileSync(path.join(cache, 'meta.json'), 'utf8'));
}

// uint8 [n, 3, S, S] -> Float32Array, float32 arithmetic in the order (x / 255 - mean) / std.
function preprocess(u8, n, S) {
  const out = new Float32Array(n * 3 * S * S);
  const f = Math.fround;
  for (let b = 0; b < n; ++b)
    for (let c = 0; c < 3; ++c) {
      const base = (b * 3 + c) * S * S;
      const m = f(MEAN[c]), s = f(STD[c]);
      for (let i = 0; i < S * S; ++i) out[base + i] = f(f(f(u8[base + i]) / 255) - m) / s;
    }
  return out;
}

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

async function main() {
  const cache = arg('--cache', path.join(__dirname, '..', 'build', 'bench_embed_cache'));
  const threads = parseInt(arg('--threads', '2'), 10);
  const reps32 = parseInt(arg('--reps32', '3'), 10);
  const reps1 = parseInt(arg('--reps1', '10'), 10);
  const meta = readMeta(cache);
  const S = meta.image_size, B = meta.batch, E = meta.embed_dim;
  const baseRss = process.memoryUsage().rss;
  const t0 = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(path.join(cache, 'vit-b32-image.onnx'), {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const loadS = Number(process.hrtime.bigint() - t0) / 1e9;
  const u8 = fs.readFileSync(path.join(cache, 'images.u8'));
  const x32 = new ort.Tensor('float32', preprocess(u8, B, S), [B, 3, S, S]);
  const x1 = new ort.Tensor('float32', x32.data.slice(0, 3 * S * S), [1, 3, S, S]);
  const refBuf = fs.readFileSync(path.join(cache, 'reference.f32'));
  const ref = new Float32Array(refBuf.buffer, refBuf.byteOffset, B * E);

  const run = async (x) => {
    const a = process.hrtime.bigint();
    const out = await session.run({images: x});
    return [Number(process.hrtime.bigint() - a) / 1e9, out.embeds.data];
  };
  const [checkS, got] = await run(x32);
  let maxAbs = 0, minCos = 1;
  for (let b = 0; b < B; ++b) {
    let dot = 0, na = 0, nb = 0;
    for (let e = 0; e < E; ++e) {
      const p = got[b * E + e], q = ref[b * E + e];
      maxAbs = Math.max(maxAbs, Math.abs(p - q));
      dot += p * q; na += p * p; nb += q * q;
    }
    minCos = Math.min(minCos, dot / Math.sqrt(na * nb));
  }
  const t32 = [], t1 = [];
  for (let i = 0; i < reps32; ++i) t32.push((await run(x32))[0]);
  for (let i = 0; i < 2; ++i) await run(x1);
  for (let i = 0; i < reps1; ++i) t1.push((await run(x1))[0]);
  const result = {
    side: 'onnxruntime',
    version: require(path.join(path.dirname(require.resolve('onnxruntime-node', {paths: [__dirname]})), '..', 'package.json')).version,
    node: process.version,
    threads,
    load_s: loadS,
    check_s: checkS,
    max_abs_diff: maxAbs,
    min_cosine: minCos,
    batch32_s: t32,
    batch1_s: t1,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    base_rss_bytes: baseRss,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => fail(String(e && e.message ? e.message : e)));
