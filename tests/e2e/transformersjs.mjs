// transformers.js (onnxruntime-node underneath) loading a local model folder, as an engine would:
//   node transformersjs.mjs ROOT MODEL_ID TEXT...  -> {"ids": [[...]], "embeddings": [[...]]}
// ROOT is transformers.js's localModelPath; remote models are off, so every byte comes from
// ROOT/MODEL_ID. The model (config.json) asks for external data: onnxruntime opens
// onnx/model.onnx and maps onnx/model.onnx_data from the same folder itself.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const scriptDir = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.MODELFS_NODE_MODULES
    || path.resolve(scriptDir, "..", "node", "node_modules");
const entry = path.join(nodeModules, "@huggingface", "transformers", "dist",
    "transformers.node.mjs");
if (!fs.existsSync(entry)) {
    process.stderr.write(`transformersjs: @huggingface/transformers not found at ${entry}\n`);
    process.exit(1);
}
setTimeout(() => { process.stderr.write("transformersjs: timed out\n"); process.exit(124); },
    90000).unref();
const { env, pipeline } = await import(pathToFileURL(entry).href);
const [root, modelId, ...texts] = process.argv.slice(2);

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = root;
env.useFSCache = false;

const extractor = await pipeline("feature-extraction", modelId, { device: "cpu", dtype: "fp32" });
const ids = texts.map((t) => Array.from(extractor.tokenizer(t).input_ids.data, Number));
const out = await extractor(texts, { pooling: "mean", normalize: true });
process.stdout.write(JSON.stringify({ ids, dims: out.dims, embeddings: out.tolist() }) + "\n");
await extractor.dispose();
