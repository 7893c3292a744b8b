// The Hub's own JS client on modelfs's Hugging Face cache view (MOUNT/.hub):
//   node hub_cache.mjs download CACHE_DIR REPO REVISION PATH   -> {"path": ...}
//   node hub_cache.mjs scan CACHE_DIR                           -> scanCacheDir's repos
// hubUrl points at a closed port: anything the client would fetch fails instead of
// downloading, so a returned path proves the cache layout alone answered.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const scriptDir = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.MODELFS_NODE_MODULES
    || path.resolve(scriptDir, "..", "node", "node_modules");
const entry = path.join(nodeModules, "@huggingface", "hub", "dist", "index.mjs");
if (!fs.existsSync(entry)) {
    process.stderr.write(`hub_cache: @huggingface/hub not found at ${entry}\n`);
    process.exit(1);
}
setTimeout(() => { process.stderr.write("hub_cache: timed out\n"); process.exit(124); }, 60000)
    .unref();
const hub = await import(pathToFileURL(entry).href);
const [cmd, cacheDir, repo, revision, file] = process.argv.slice(2);
const noHub = process.env.HUB_URL || "http://127.0.0.1:9";

if (cmd === "download") {
    const p = await hub.downloadFileToCacheDir({ repo, path: file, revision, cacheDir, hubUrl: noHub });
    process.stdout.write(JSON.stringify({ path: p }) + "\n");
} else if (cmd === "scan") {
    const r = await hub.scanCacheDir(cacheDir);
    process.stdout.write(JSON.stringify({
        size: r.size,
        warnings: r.warnings.map(String),
        repos: r.repos.map((x) => ({
            name: x.id.name, type: x.id.type, size: x.size, files: x.filesCount,
            revisions: x.revisions.map((v) => ({ commit: v.commitOid, refs: v.refs, size: v.size,
                files: v.files.length })),
        })),
    }) + "\n");
} else {
    process.stderr.write("usage: hub_cache.mjs download|scan CACHE_DIR [REPO REVISION PATH]\n");
    process.exit(2);
}
