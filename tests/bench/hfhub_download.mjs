#!/usr/bin/env node
// Download peer: the Hub's own JS client, @huggingface/hub (tests/node/node_modules).
//
//   node tests/bench/hfhub_download.mjs --hub URL --cache-dir DIR ORG/NAME PATH [PATH...]
//
// downloadFileToCacheDir() per file, one after the other, like a user script would: a
// paths-info POST, then downloadFile() (HEAD through the resolve redirect, then ONE streamed
// GET of the whole file) into DIR/models--org--name/blobs/<etag>, with the snapshot symlink.
// hubUrl is passed explicitly: the package ignores HF_ENDPOINT.
// stdout: one JSON line {"files": [{"path", "local"}]} with the snapshot paths.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.MODELFS_NODE_MODULES || path.resolve(here, "..", "node", "node_modules");
const args = process.argv.slice(2);
const opt = (name) => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
};
const hubUrl = opt("--hub");
const cacheDir = opt("--cache-dir");
const [repo, ...paths] = args;
if (!hubUrl || !cacheDir || !repo || paths.length === 0) {
    process.stderr.write("usage: hfhub_download.mjs --hub URL --cache-dir DIR ORG/NAME PATH...\n");
    process.exit(2);
}
const timeoutMs = Number(process.env.BENCH_HFHUB_TIMEOUT_MS ?? 900000);
setTimeout(() => { process.stderr.write("hfhub_download: timed out\n"); process.exit(124); }, timeoutMs).unref();
console.debug = () => {};  // "Downloading X to Y.incomplete"

try {
    const hub = await import(pathToFileURL(path.join(nodeModules, "@huggingface", "hub", "dist", "index.mjs")).href);
    const files = [];
    for (const p of paths) {
        const local = await hub.downloadFileToCacheDir({ repo, path: p, revision: "main", hubUrl, cacheDir, xet: false });
        files.push({ path: p, local });
    }
    process.stdout.write(JSON.stringify({ files }) + "\n");
} catch (e) {
    process.stderr.write(`hfhub_download: ${e?.stack || e}\n`);
    process.exit(1);
}
