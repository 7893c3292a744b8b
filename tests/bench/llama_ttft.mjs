#!/usr/bin/env node
// Model-load benchmark: load a GGUF with node-llama-cpp (small header reads, then
// mmap(MAP_SHARED | MAP_POPULATE) of the whole file) and generate ONE token.
//
//   node tests/bench/llama_ttft.mjs MODEL_PATH
//
// stdout: one JSON line with milliseconds since the process started (performance.now()):
//   {"init_ms": getLlama done, "load_ms": loadModel done, "first_token_ms": first token out,
//    "load_only_ms": load_ms - init_ms}
// Bounded: exits 124 after BENCH_LLAMA_TIMEOUT_MS (default 180000).
import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.MODELFS_NODE_MODULES || path.resolve(here, "..", "node", "node_modules");
const modelPath = path.resolve(process.argv[2] || "");
const timeoutMs = Number(process.env.BENCH_LLAMA_TIMEOUT_MS ?? 180000);
setTimeout(() => { process.stderr.write("llama_ttft: timed out\n"); process.exit(124); }, timeoutMs).unref();

const out = process.stdout.write.bind(process.stdout);
console.log = (...a) => console.error(...a);
console.info = (...a) => console.error(...a);

try {
    fs.statSync(modelPath);
    const { getLlama, LlamaCompletion, LlamaLogLevel } =
        await import(pathToFileURL(path.join(nodeModules, "node-llama-cpp", "dist", "index.js")).href);
    const llama = await getLlama({ gpu: false, build: "never", skipDownload: true,
                                   usePrebuiltBinaries: true, progressLogs: false, maxThreads: 2,
                                   logLevel: LlamaLogLevel.error });
    const init = performance.now();
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const loaded = performance.now();
    const context = await model.createContext({ contextSize: 128, batchSize: 128, sequences: 1 });
    const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
    let first = null;
    await completion.generateCompletionWithMeta("The capital of France is", {
        maxTokens: 1, temperature: 0, repeatPenalty: false,
        onToken: () => { if (first === null) first = performance.now(); },
    });
    const r = { init_ms: init, load_ms: loaded, first_token_ms: first, load_only_ms: loaded - init };
    await new Promise((res) => out(JSON.stringify(r) + "\n", res));
    process.exit(0);
} catch (e) {
    process.stderr.write(`llama_ttft: ${e?.stack || e}\n`);
    process.exit(1);
}
