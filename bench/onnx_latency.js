#!/usr/bin/env node
// Latency of several ONNX models on the same input in one onnxruntime-node process, the runs
// interleaved (model 1, 2, ..., 1, 2, ...) so that every model meets the same machine load:
// a noisy machine slows all of them together, and the per-round ratios against the first model
// stay steady where absolute times do not.
//
//   node bench/onnx_latency.js INPUT.bin BATCH SEQ ROUNDS THREADS MODEL.onnx [MODEL.onnx ...]
//
// Prints one JSON object: per model the median and minimum ms, and the median over rounds of
// (first model's time / this model's time).
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, '..', 'tests', 'node', 'node_modules', 'onnxruntime-node'));

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main() {
  const [input, batchText, sequenceText, roundsText, threadsText, ...models] = process.argv.slice(2);
  if (models.length === 0) throw new Error('usage: node bench/onnx_latency.js INPUT.bin BATCH SEQ ROUNDS THREADS MODEL.onnx...');
  const batch = Number(batchText), sequence = Number(sequenceText), rounds = Number(roundsText);
  const bytes = fs.readFileSync(input);
  if (bytes.length !== batch * sequence * 8) throw new Error(`${input}: expected ${batch} x ${sequence} int64 ids`);
  const ids = new BigInt64Array(batch * sequence);
  for (let i = 0; i < ids.length; ++i) ids[i] = bytes.readBigInt64LE(i * 8);
  const feeds = { input_ids: new ort.Tensor('int64', ids, [batch, sequence]) };
  // Threads of a session that is not running must not spin: they would take the cores from
  // the session that is.
  const options = { graphOptimizationLevel: 'all', executionMode: 'sequential', interOpNumThreads: 1,
                    intraOpNumThreads: Number(threadsText),
                    extra: { session: { intra_op: { allow_spinning: '0' } } } };
  const sessions = [];
  for (const model of models) sessions.push(await ort.InferenceSession.create(model, options));
  for (const session of sessions) for (let i = 0; i < 2; ++i) await session.run(feeds);  // warm-up

  const times = sessions.map(() => []);
  for (let round = 0; round < rounds; ++round) {
    for (let m = 0; m < sessions.length; ++m) {
      const start = process.hrtime.bigint();
      await sessions[m].run(feeds);
      times[m].push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  const result = models.map((model, m) => ({
    model: path.basename(model),
    median_ms: median(times[m]),
    min_ms: Math.min(...times[m]),
    speedup: median(times[0].map((t, round) => t / times[m][round])),
  }));
  process.stdout.write(JSON.stringify(result) + '\n');
  for (const session of sessions) await session.release();
}

main().catch((error) => {
  process.stderr.write(`onnx_latency.js: ${error && error.message ? error.message : error}\n`);
  process.exit(1);
});
