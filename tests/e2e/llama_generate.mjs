#!/usr/bin/env node
// Load a GGUF model with node-llama-cpp (the real llama.cpp: small header
// reads, then mmap of the whole file) and greedily generate a few tokens.
//
//   node tests/e2e/llama_generate.mjs MODEL_PATH [PROMPT]
//
// stdout: exactly one JSON line {"tokens":[...],"text":"..."}; exit 0.
// stderr: llama.cpp / node-llama-cpp logs and errors; exit non-zero on failure.
//
// node-llama-cpp is resolved from ../node/node_modules relative to this script
// (override with MODELFS_NODE_MODULES), so the cwd does not matter. It runs
// offline: the prebuilt CPU binary is used (build "never", no download).
//
// Environment: LLAMA_GENERATE_TIMEOUT_MS (default 120000), LLAMA_MAX_TOKENS
// (default 8), LLAMA_LOG_LEVEL (default "warn"; e.g. "debug", "info").

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const scriptDir = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.MODELFS_NODE_MODULES
    || path.resolve(scriptDir, "..", "node", "node_modules");

function fail(msg, code = 1) {
    process.stderr.write(`llama_generate: error: ${msg}\n`);
    process.exit(code);
}

const [modelArg, promptArg] = process.argv.slice(2);
if (!modelArg) fail("usage: node llama_generate.mjs MODEL_PATH [PROMPT]", 2);
const modelPath = path.resolve(modelArg);
const prompt = promptArg ?? "The capital of France is";
const maxTokens = Number(process.env.LLAMA_MAX_TOKENS ?? 8);
const timeoutMs = Number(process.env.LLAMA_GENERATE_TIMEOUT_MS ?? 120000);
const logLevel = process.env.LLAMA_LOG_LEVEL ?? "warn";

// Anything that hangs (e.g. a stuck FUSE read) ends the process instead of the test.
setTimeout(() => fail(`timed out after ${timeoutMs} ms`, 124), timeoutMs).unref();

try {
    const st = fs.statSync(modelPath);
    if (!st.isFile()) fail(`${modelPath}: not a regular file`);
} catch (e) {
    fail(`${modelPath}: ${e.message}`);
}

// node-llama-cpp writes a few messages with console.log; keep stdout for the result only.
const writeStdout = process.stdout.write.bind(process.stdout);
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const entry = path.join(nodeModules, "node-llama-cpp", "dist", "index.js");
if (!fs.existsSync(entry)) fail(`node-llama-cpp not found at ${entry} (set MODELFS_NODE_MODULES)`);

let llama, model, context;
try {
    const { getLlama, LlamaCompletion, LlamaLogLevel } = await import(pathToFileURL(entry).href);

    llama = await getLlama({
        gpu: false,
        build: "never",          // never compile llama.cpp
        skipDownload: true,      // never fetch llama.cpp sources
        usePrebuiltBinaries: true,
        progressLogs: false,
        maxThreads: 2,
        logLevel: Object.values(LlamaLogLevel).includes(logLevel) ? logLevel : LlamaLogLevel.warn,
        logger: (level, message) => {
            process.stderr.write(`[llama.cpp ${level}] ${message}${message.endsWith("\n") ? "" : "\n"}`);
        },
    });

    model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    context = await model.createContext({ contextSize: 128, batchSize: 128, sequences: 1 });
    const completion = new LlamaCompletion({ contextSequence: context.getSequence() });

    const tokens = [];
    const res = await completion.generateCompletionWithMeta(prompt, {
        maxTokens,
        temperature: 0,          // greedy: argmax of the logits
        repeatPenalty: false,    // pure greedy, no history-dependent penalty
        onToken: (chunk) => { tokens.push(...chunk); },
    });
    process.stderr.write(`llama_generate: stopReason=${res.metadata.stopReason} tokens=${tokens.length}\n`);

    const line = JSON.stringify({ tokens, text: res.response }) + "\n";
    await new Promise((resolve) => writeStdout(line, resolve));
} catch (e) {
    fail(e?.stack || String(e));
}

try {
    await context?.dispose();
    await model?.dispose();
    await llama?.dispose();
} catch (e) {
    process.stderr.write(`llama_generate: warning: dispose: ${e?.message || e}\n`);
}
process.exit(0);
