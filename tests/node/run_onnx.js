#!/usr/bin/env node
// Runs a lathe-exported ONNX model in ONNX Runtime for the tests and benchmarks.
//
//   node run_onnx.js MODEL.onnx INPUT.bin BATCH SEQ OUTPUT.bin [--threads N] [--bench N] [--optimization LEVEL]
//                    [--all-outputs FOLDER]
//
// INPUT.bin holds BATCH*SEQ int64 little-endian token ids; OUTPUT.bin receives the `logits`
// output as float32 little-endian. With --all-outputs every output of the graph is written to
// FOLDER as raw little-endian bytes, FOLDER/<index>.bin, listed in FOLDER/outputs.json with its
// name, type and dimensions. With --bench N the model also runs N timed iterations after
// two warm-ups and prints {"mean_ms": ..., "min_ms": ...} on stdout. Errors go to stderr with
// exit code 1. --threads sets ONNX Runtime's intra-op threads (default: its own choice).
'use strict';

const fs = require('fs');
const os = require('os');
const ort = require('onnxruntime-node');

const USAGE = 'usage: node run_onnx.js MODEL.onnx INPUT.bin BATCH SEQ OUTPUT.bin [--threads N] [--bench N] [--optimization disabled|basic|extended|all] [--all-outputs FOLDER]';

function positiveInteger(text, what) {
  if (!/^[0-9]+$/.test(text || '') || Number(text) < 1) {
    throw new Error(`${what} must be a positive integer, got ${text === undefined ? 'nothing' : `"${text}"`}`);
  }
  return Number(text);
}

function parseArguments(argv) {
  const positional = [];
  const options = { threads: 0, bench: 0, optimization: 'all', allOutputs: '' };
  for (let i = 0; i < argv.length; ++i) {
    const argument = argv[i];
    if (argument === '--threads' || argument === '--bench') {
      const name = argument.slice(2);
      options[name] = positiveInteger(argv[++i], argument);
    } else if (argument === '--optimization') {
      options.optimization = argv[++i];
      if (!['disabled', 'basic', 'extended', 'all'].includes(options.optimization)) throw new Error(USAGE);
    } else if (argument === '--all-outputs') {
      options.allOutputs = argv[++i];
      if (!options.allOutputs) throw new Error(USAGE);
    } else if (argument.startsWith('--')) {
      throw new Error(`unknown option ${argument}\n${USAGE}`);
    } else {
      positional.push(argument);
    }
  }
  if (positional.length !== 5) throw new Error(USAGE);
  const [model, input, batch, sequence, output] = positional;
  return {
    model, input, output, ...options,
    batch: positiveInteger(batch, 'BATCH'),
    sequence: positiveInteger(sequence, 'SEQ'),
  };
}

function readIds(path, batch, sequence) {
  const bytes = fs.readFileSync(path);
  const expected = batch * sequence * 8;
  if (bytes.length !== expected) {
    throw new Error(`${path}: ${bytes.length} bytes, expected ${expected} (${batch} x ${sequence} int64 ids)`);
  }
  const ids = new BigInt64Array(batch * sequence);
  for (let i = 0; i < ids.length; ++i) ids[i] = bytes.readBigInt64LE(i * 8);
  return ids;
}

function writeFloats(path, data) {
  if (os.endianness() === 'LE') {
    fs.writeFileSync(path, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return;
  }
  const bytes = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; ++i) bytes.writeFloatLE(data[i], i * 4);
  fs.writeFileSync(path, bytes);
}

async function main() {
  const args = parseArguments(process.argv.slice(2));
  const sessionOptions = { graphOptimizationLevel: args.optimization, executionMode: 'sequential', interOpNumThreads: 1 };
  if (args.threads > 0) sessionOptions.intraOpNumThreads = args.threads;
  const session = await ort.InferenceSession.create(args.model, sessionOptions);
  const feeds = { input_ids: new ort.Tensor('int64', readIds(args.input, args.batch, args.sequence), [args.batch, args.sequence]) };

  if (args.allOutputs) {
    if (os.endianness() !== 'LE') throw new Error('--all-outputs writes raw bytes and needs a little-endian machine');
    const results = await session.run(feeds);
    fs.mkdirSync(args.allOutputs, { recursive: true });
    const listing = session.outputNames.map((name, index) => {
      const tensor = results[name];
      const data = tensor.data;
      fs.writeFileSync(`${args.allOutputs}/${index}.bin`, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return { name, type: tensor.type, dims: tensor.dims, file: `${index}.bin` };
    });
    fs.writeFileSync(`${args.allOutputs}/outputs.json`, JSON.stringify(listing));
  }
  const run = async () => (await session.run(feeds, ['logits'])).logits;
  let logits = await run();
  if (args.bench > 0) {
    logits = await run();  // second warm-up
    const times = [];
    for (let i = 0; i < args.bench; ++i) {
      const start = process.hrtime.bigint();
      logits = await run();
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    const mean = times.reduce((sum, t) => sum + t, 0) / times.length;
    process.stdout.write(JSON.stringify({ mean_ms: mean, min_ms: Math.min(...times) }) + '\n');
  }
  if (logits.type !== 'float32') throw new Error(`logits are ${logits.type}, expected float32`);
  writeFloats(args.output, logits.data);
  await session.release();
}

main().catch((error) => {
  process.stderr.write(`run_onnx.js: ${error && error.message ? error.message : error}\n`);
  process.exit(1);
});
