"""A real inference engine through the mount: node-llama-cpp loads the fixture GGUF from the
mount (header reads, then mmap(MAP_SHARED|MAP_POPULATE)) and must generate the same greedy
tokens as from the local file."""

import json
import os
import subprocess
import unittest

from mfs import FIXTURES, ORG, SOURCE, MountTest, sha256_file

SCRIPT = os.path.join(SOURCE, "tests", "e2e", "llama_generate.mjs")


def generate(path):
    r = subprocess.run(["node", SCRIPT, path], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"llama_generate failed on {path}:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


class Llama(MountTest):
    def test_same_tokens_through_the_mount(self):
        repo = self.repo("tiny-llama-GGUF")
        local = self.local("tiny-llama-GGUF", "model.gguf")
        m = self.mount()
        mounted = m.path(ORG, "tiny-llama-GGUF", "model.gguf")
        want = generate(local)
        got = generate(mounted)
        print(f"\n  local:   {want['tokens']}\n  mounted: {got['tokens']}")
        self.assertEqual(len(want["tokens"]), 8)
        self.assertEqual(got["tokens"], want["tokens"])
        f = [x for x in repo["commits"][repo["branches"]["main"]]["files"] if x["path"] == "model.gguf"][0]
        self.assertEqual(sha256_file(mounted), f["sha256"])
        # The copy repo has the same bytes: it is served from the same chunks (dedup).
        before = self.hub.file_bytes()
        self.assertEqual(sha256_file(m.path(ORG, "tiny-llama-GGUF-copy", "model.gguf")), f["sha256"])
        self.assertEqual(self.hub.file_bytes(), before, "same sha256 in another repo: no new bytes")


if __name__ == "__main__":
    unittest.main()
