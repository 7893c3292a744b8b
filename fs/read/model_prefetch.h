// Model-aware prefetch: what a loader opens tells what it reads next. Pure functions over file
// paths; the core applies them on open and the reader fetches what they name.
//
// - A model file (GGUF, safetensors, PyTorch/ONNX weights) is read whole by a loader once it
//   reads past the header: readahead then goes straight to full width (readahead.h).
// - A sharded checkpoint is loaded shard after shard: opening its index
//   (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) or any shard
//   (`model-00002-of-00004.safetensors`) names every shard of the set, in order, to be fetched
//   in the background while the loader works through the first.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace modelfs::fs {

bool IsModelFile(std::string_view path);

// True when `path` is a shard or a shard index, i.e. ShardSet may name something: the check
// made on every open, before the snapshot's paths are gathered.
bool MayOpenShardSet(std::string_view path);

// The shards of the set that `opened` belongs to, in shard order, taken from `paths` (every
// file of the snapshot); empty when `opened` is neither a shard nor a shard index, or when no
// shard is listed.
std::vector<std::string> ShardSet(const std::string& opened, const std::vector<std::string>& paths);

}  // namespace modelfs::fs
