// Fidelity check of the hub simulator against the real npm client @huggingface/hub.
//
//   node tests/hubsim/fidelity.mjs --fixtures DIR [--hub URL] [--python python3]
//
// Without --hub it starts tests/hubsim/hubsim.py on DIR itself (and stops it at the end).
// The client is the reference: when a call fails because the simulator deviates from the
// Hub, the simulator is what gets fixed. Functions exercised: listFiles, downloadFile,
// fileDownloadInfo, modelInfo (with additionalFields), pathsInfo, snapshotDownload, and
// WebBlob range slices (blob.slice().arrayBuffer()).
// Closes with "N passed, M failed"; exits non-zero on any failure.

import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// ESM ignores NODE_PATH: resolve the client from tests/node/node_modules explicitly.
const require = createRequire(join(here, "..", "node", "package.json"));
const hub = await import(pathToFileURL(require.resolve("@huggingface/hub")).href);
const { listFiles, downloadFile, fileDownloadInfo, modelInfo, pathsInfo, snapshotDownload } = hub;

const FULL = "hf_modelfs_full";
const BASIC = "hf_modelfs_basic";
const TIMEOUT_MS = 240_000;

function arg(name, dflt) {
	const i = process.argv.indexOf(name);
	return i >= 0 ? process.argv[i + 1] : dflt;
}
const fixtures = arg("--fixtures");
if (!fixtures) {
	console.error("usage: node fidelity.mjs --fixtures DIR [--hub URL] [--python python3]");
	process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(fixtures, "manifest.json"), "utf8"));

let passed = 0;
let failed = 0;
function check(cond, what, detail = "") {
	if (cond) passed++;
	else {
		failed++;
		console.log(`FAIL ${what}${detail ? ": " + detail : ""}`);
	}
}
async function expectError(promise, status, what) {
	try {
		const r = await promise;
		check(false, what, `expected HTTP ${status}, got success (${typeof r})`);
	} catch (e) {
		check(e.statusCode === status, what, `expected ${status}, got ${e.statusCode}: ${e.message}`);
	}
}
const sha256 = (buf) => createHash("sha256").update(Buffer.from(buf)).digest("hex");

// ------------------------------------------------------------------ simulator
let sim = null;
let hubUrl = arg("--hub");
if (!hubUrl) {
	const ready = join(mkdtempSync(join(tmpdir(), "hubsim-fid-")), "ready.json");
	sim = spawn(arg("--python", "python3"),
		[join(here, "hubsim.py"), "--fixtures", fixtures, "--port", "0", "--cdn-port", "0",
			"--ready-file", ready], { stdio: ["ignore", "inherit", "inherit"] });
	const t0 = Date.now();
	while (!existsSync(ready)) {
		if (Date.now() - t0 > 20_000 || sim.exitCode !== null) {
			console.error("hubsim did not become ready");
			process.exit(1);
		}
		await new Promise((r) => setTimeout(r, 50));
	}
	hubUrl = JSON.parse(readFileSync(ready, "utf8")).hub;
}
const watchdog = setTimeout(() => {
	console.log("FAIL watchdog: fidelity check took too long");
	sim?.kill("SIGTERM");
	process.exit(1);
}, TIMEOUT_MS);

async function sim_(path, body) {
	const r = await fetch(hubUrl + "/_sim/" + path, body === undefined ? {} :
		{ method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
	return r.json();
}

// A fetch that adds limit=N to tree listings: forces several Link pages.
function limitedFetch(limit, pages) {
	return (url, init) => {
		const u = new URL(url);
		if (u.pathname.includes("/tree/") && !u.searchParams.has("limit")) u.searchParams.set("limit", String(limit));
		pages.n++;
		return fetch(u, init);
	};
}

// ------------------------------------------------------------------ helpers
function commitOf(repo, rev) {
	return repo.branches[rev] ?? repo.tags[rev] ?? repo.refs?.[rev] ?? rev;
}
async function pool(items, n, fn) {
	let i = 0;
	await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
		while (i < items.length) await fn(items[i++]);
	}));
}

// ------------------------------------------------------------------ checks
async function checkListing(repo, rev) {
	const commit = repo.commits[commitOf(repo, rev)];
	const files = new Map(commit.files.map((f) => [f.path, f]));
	const dirs = new Set(Object.keys(commit.dirs));
	for (const mode of ["default", "paged"]) {
		const pages = { n: 0 };
		const seen = new Map();
		const entries = listFiles({
			repo: repo.id, hubUrl, recursive: true, revision: encodeURIComponent(rev), accessToken: FULL,
			...(mode === "paged" ? { fetch: limitedFetch(3, pages) } : {}),
		});
		for await (const e of entries) {
			check(!seen.has(e.path), `${repo.id}@${rev} ${mode}: ${e.path} listed once`);
			seen.set(e.path, e);
		}
		const what = `${repo.id}@${rev} listFiles(${mode})`;
		check(seen.size === files.size + dirs.size, `${what} count`, `${seen.size} != ${files.size + dirs.size}`);
		for (const [p, f] of files) {
			const e = seen.get(p);
			if (!e) { check(false, `${what} has ${p}`); continue; }
			const ok = e.type === "file" && e.size === f.size && e.oid === f.oid &&
				(f.lfs ? e.lfs?.oid === f.sha256 && e.lfs?.size === f.size && e.lfs?.pointerSize === f.pointer_size
					: e.lfs === undefined);
			check(ok, `${what} entry ${p}`, JSON.stringify(e));
		}
		for (const d of dirs) {
			const e = seen.get(d);
			check(e?.type === "directory" && e.oid === commit.dirs[d], `${what} dir ${d}`, JSON.stringify(e));
		}
		if (mode === "paged") {
			const want = Math.ceil((files.size + dirs.size) / 3);
			check(pages.n === Math.max(1, want), `${what} pages`, `${pages.n} pages, expected ${want}`);
		}
	}
	// a non-recursive listing of a sub folder
	const sub = [...dirs].sort()[0];
	if (sub) {
		const got = [];
		for await (const e of listFiles({ repo: repo.id, hubUrl, path: sub, revision: encodeURIComponent(rev), accessToken: FULL }))
			got.push(e.path);
		const want = [...files.keys(), ...dirs].filter((p) => p.startsWith(sub + "/") && !p.slice(sub.length + 1).includes("/"));
		check(got.length === want.length && want.every((p) => got.includes(p)), `${repo.id}@${rev} listFiles(path=${sub})`,
			`${got.length} vs ${want.length}`);
	}
}

async function checkDownloads(repo, rev) {
	const commit = repo.commits[commitOf(repo, rev)];
	await pool(commit.files, 6, async (f) => {
		const what = `${repo.id}@${rev} downloadFile ${f.path}`;
		try {
			const info = await fileDownloadInfo({ repo: repo.id, path: f.path, revision: rev, hubUrl, accessToken: FULL });
			check(info.size === f.size, `${what} size`, `${info.size} != ${f.size}`);
			check(info.etag.replace(/^W\//, "").replaceAll('"', "") === f.etag, `${what} etag`, info.etag);
			const blob = await downloadFile({ repo: repo.id, path: f.path, revision: rev, hubUrl, accessToken: FULL, xet: false });
			const buf = await blob.arrayBuffer();
			check(buf.byteLength === f.size && sha256(buf) === f.sha256, `${what} bytes`, `${buf.byteLength} bytes`);
			if (f.size > 2_000_000) { // a ranged slice through the client's WebBlob
				const a = Math.floor(f.size / 3), b = a + 100_000;
				const part = Buffer.from(await blob.slice(a, b).arrayBuffer());
				const whole = readFileSync(join(fixtures, "repos", repo.id, commit.sha ?? commitOf(repo, rev), f.path));
				check(part.equals(whole.subarray(a, b)), `${what} slice ${a}-${b}`);
			}
		} catch (e) {
			if (f.size === 0) {
				// The client probes with "Range: bytes=0-0", unsatisfiable on an empty file:
				// the simulator answers 416 (RFC 9110) and the client gives up.
				check(e.statusCode === 416, `${what} (empty file: 416 expected)`, e.message);
				const r = await fetch(`${hubUrl}/${repo.id}/resolve/${encodeURIComponent(rev)}/${f.path}`,
					{ headers: { Authorization: `Bearer ${FULL}` } });
				check(r.status === 200 && (await r.arrayBuffer()).byteLength === 0, `${what} plain GET of empty file`);
			} else check(false, what, e.stack);
		}
	});
}

async function checkErrors() {
	const priv = "modelfs-test/private-model";
	const gated = "modelfs-test/gated-model";
	const listAll = async (p) => { for await (const _ of listFiles(p)); };
	await expectError(listAll({ repo: priv, hubUrl }), 401, "anonymous listFiles private -> 401");
	await expectError(listAll({ repo: priv, hubUrl, accessToken: BASIC }), 404, "basic listFiles private -> 404");
	await expectError(listAll({ repo: "modelfs-test/nope", hubUrl }), 401, "anonymous listFiles missing -> 401");
	await expectError(listAll({ repo: "modelfs-test/nope", hubUrl, accessToken: FULL }), 404, "listFiles missing -> 404");
	await expectError(listAll({ repo: priv, hubUrl, accessToken: "hf_not_a_token" }), 401, "bad token -> 401");
	await expectError(downloadFile({ repo: gated, path: "config.json", hubUrl }), 401, "anonymous gated download -> 401");
	await expectError(downloadFile({ repo: gated, path: "config.json", hubUrl, accessToken: BASIC }), 403, "basic gated download -> 403");
	await expectError(modelInfo({ name: "modelfs-test/versioned", hubUrl, revision: "no-such-branch" }), 404, "modelInfo bad revision -> 404");
	const missing = await downloadFile({ repo: "modelfs-test/edge-cases", path: "no/such/file.txt", hubUrl });
	check(missing === null, "downloadFile of a missing file -> null (EntryNotFound)");
	// gated metadata is public, files are not
	let n = 0;
	for await (const _ of listFiles({ repo: gated, hubUrl })) n++;
	check(n > 0, "anonymous listFiles on a gated repo works");
	// the exact headers behind those errors
	const h = async (path, token) => {
		const r = await fetch(hubUrl + path, { headers: token ? { Authorization: `Bearer ${token}` } : {}, redirect: "manual" });
		await r.arrayBuffer();
		return [r.status, r.headers.get("x-error-code"), r.headers.get("x-error-message")];
	};
	const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);
	let r;
	check(eq(r = await h(`/api/models/${priv}`), [401, null, "Invalid username or password."]), "headers anon private", r);
	check(eq((r = await h(`/api/models/${priv}`, BASIC)).slice(0, 2), [404, "RepoNotFound"]), "headers basic private", r);
	check(eq((r = await h(`/${gated}/resolve/main/config.json`)).slice(0, 2), [401, "GatedRepo"]), "headers anon gated", r);
	check(eq((r = await h(`/${gated}/resolve/main/config.json`, BASIC)).slice(0, 2), [403, "GatedRepo"]), "headers basic gated", r);
	check(eq((r = await h(`/modelfs-test/versioned/resolve/nope/config.json`)).slice(0, 2), [404, "RevisionNotFound"]), "headers bad rev", r);
	check(eq((r = await h(`/modelfs-test/versioned/resolve/main/nope.txt`)).slice(0, 2), [404, "EntryNotFound"]), "headers missing entry", r);
}

async function checkInfo(repo) {
	for (const rev of [...Object.keys(repo.branches), ...Object.keys(repo.tags), ...Object.keys(repo.refs ?? {})]) {
		const info = await modelInfo({ name: repo.id, hubUrl, revision: rev, accessToken: FULL, additionalFields: ["sha"] });
		check(info.sha === commitOf(repo, rev) && info.name === repo.id, `${repo.id} modelInfo@${rev}`, JSON.stringify(info));
		check(info.private === repo.private && info.gated === repo.gated, `${repo.id} modelInfo flags`);
	}
	const extra = await modelInfo({ name: repo.id, hubUrl, accessToken: FULL, additionalFields: ["safetensors", "filePaths", "lastModified"] });
	const mainFiles = repo.commits[repo.branches.main].files.map((f) => f.path);
	check(JSON.stringify(extra.filePaths) === JSON.stringify(mainFiles), `${repo.id} modelInfo filePaths`);
	check(extra.updatedAt.toISOString() === repo.commits[repo.branches.main].date, `${repo.id} modelInfo lastModified`);
	if (repo.expect?.parameters)
		check(extra.safetensors?.total === repo.expect.parameters, `${repo.id} modelInfo safetensors.total`, JSON.stringify(extra.safetensors));
	const commit = repo.commits[repo.branches.main];
	const paths = [...commit.files.slice(0, 3).map((f) => f.path), ...Object.keys(commit.dirs).slice(0, 1), "missing.txt"];
	const got = await pathsInfo({ repo: repo.id, hubUrl, paths, revision: "main", expand: true, accessToken: FULL });
	check(got.length === paths.length - 1, `${repo.id} pathsInfo count`, `${got.length}`);
	for (const g of got) {
		const f = commit.files.find((x) => x.path === g.path);
		const ok = f ? g.type === "file" && g.oid === f.oid && g.size === f.size && (f.lfs ? g.lfs?.oid === f.sha256 : !g.lfs)
			: g.type === "directory" && g.oid === commit.dirs[g.path];
		check(ok && g.lastCommit?.id?.length === 40, `${repo.id} pathsInfo ${g.path}`, JSON.stringify(g));
	}
}

async function checkSnapshot(repo, rev) {
	const cacheDir = mkdtempSync(join(tmpdir(), "hubsim-snap-"));
	const origDebug = console.debug;
	console.debug = () => {}; // the client logs every file it downloads
	try {
		const folder = await snapshotDownload({ repo: repo.id, hubUrl, revision: rev, cacheDir, accessToken: FULL });
		const commit = repo.commits[commitOf(repo, rev)];
		check(folder.endsWith(commitOf(repo, rev)), `${repo.id}@${rev} snapshotDownload folder`, folder);
		for (const f of commit.files) {
			const p = join(folder, f.path);
			check(existsSync(p) && sha256(readFileSync(p)) === f.sha256, `${repo.id}@${rev} snapshot ${f.path}`);
		}
		const ref = join(cacheDir, "models--" + repo.id.replace("/", "--"), "refs", rev);
		check(readFileSync(ref, "utf8") === commitOf(repo, rev), `${repo.id}@${rev} snapshot refs/${rev}`);
	} catch (e) {
		check(false, `${repo.id}@${rev} snapshotDownload`, e.stack);
	} finally {
		console.debug = origDebug;
		rmSync(cacheDir, { recursive: true, force: true });
	}
}

try {
	await sim_("reset", {});
	const repos = Object.values(manifest.repos);
	for (const repo of repos) {
		await checkListing(repo, "main");
		await checkInfo(repo);
		await checkDownloads(repo, "main");
	}
	const versioned = manifest.repos["modelfs-test/versioned"];
	if (versioned) {
		for (const rev of ["dev", "feature/x", "v1.0", "refs/pr/1", ...versioned.commit_order]) {
			await checkListing(versioned, rev);
			await checkDownloads(versioned, rev);
		}
		await checkSnapshot(versioned, "dev");
	}
	const st = manifest.repos["modelfs-test/tiny-safetensors"];
	if (st) await checkSnapshot(st, "main");
	await checkErrors();
	const c = await sim_("counters");
	console.log(`info: simulator served ${c.resolve} resolve, ${c.cdn} CDN, ${c.tree} tree, ` +
		`${c.paths_info} paths-info requests, ${(c.bytes_served / 1048576).toFixed(1)} MiB; ` +
		`connections hub=${c.connections.hub} cdn=${c.connections.cdn}; ` +
		`client sent its token to the CDN ${c.cdn_auth_leaks} times`);
} catch (e) {
	check(false, "unexpected error", e.stack);
} finally {
	clearTimeout(watchdog);
	if (sim) sim.kill("SIGTERM");
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
