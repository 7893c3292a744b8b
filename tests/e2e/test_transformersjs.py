"""A second real engine through the mount: transformers.js with onnxruntime-node loads a
feature-extraction model whose weights are ONNX external data (onnxruntime maps
onnx/model.onnx_data itself), with remote models off. Its embeddings must equal those from the
local copy, and the graph evaluated in Python on the token ids it used."""

import json
import math
import os
import subprocess
import sys
import unittest

from mfs import FIXTURES, ORG, SOURCE, MountTest

sys.path.insert(0, os.path.join(SOURCE, "tests", "fixtures"))
import make_onnx  # noqa: E402  (the fixture's generator is the reference for its graph)

SCRIPT = os.path.join(SOURCE, "tests", "e2e", "transformersjs.mjs")
REPO = "tiny-onnx-embedder"
TEXTS = ["The quick brown fox jumps over the lazy dog.", "modelfs reads model files fast"]


def embed(root, model_id):
    r = subprocess.run(["node", SCRIPT, root, model_id, *TEXTS], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"transformersjs.mjs failed on {root}/{model_id}:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def reference(ids):
    """Mean-pooled, L2-normalised last_hidden_state of the fixture's graph."""
    rows = make_onnx.embed(ids)
    mean = [sum(r[j] for r in rows) / len(rows) for j in range(make_onnx.HIDDEN)]
    norm = math.sqrt(sum(x * x for x in mean))
    return [x / norm for x in mean]


class TransformersJs(MountTest):
    def setUp(self):
        super().setUp()
        repo = self.repo(REPO)
        self.commit = repo["branches"]["main"]
        self.files = {f["path"]: f for f in repo["commits"][self.commit]["files"]}

    def test_same_embeddings_through_the_mount_as_from_local_disk(self):
        data = self.files["onnx/model.onnx_data"]
        self.assertTrue(data["lfs"], "the external data is an LFS file, as on the Hub")
        m = self.mount()
        got = embed(m.mnt, f"{ORG}/{REPO}")
        served = self.hub.file_bytes(data["sha256"])
        want = embed(os.path.join(FIXTURES, "repos", ORG, REPO), self.commit)
        self.assertEqual(got["dims"], [len(TEXTS), make_onnx.HIDDEN])
        self.assertEqual(got["ids"], want["ids"])
        self.assertEqual(got["embeddings"], want["embeddings"], "bit-identical to a local load")
        for ids, vec in zip(got["ids"], got["embeddings"]):
            self.assertGreater(len(ids), 2, "the tokenizer split the text into known pieces")
            for a, b in zip(vec, reference(ids)):
                self.assertAlmostEqual(a, b, places=5)
        # The whole external data was read through the mount, and fetched from the Hub once.
        self.assertEqual(served, data["size"])

        # Another process after a restart of the mount: the same answer from the cache alone.
        cache = m.cache
        m.unmount()
        self.hub.reset()
        m2 = self.mount(cache_dir=cache)
        again = embed(m2.mnt, f"{ORG}/{REPO}")
        self.assertEqual(again["embeddings"], want["embeddings"])
        self.assertEqual(self.hub.file_bytes(), 0, "a warm cache fetches no file bytes")


if __name__ == "__main__":
    unittest.main()
