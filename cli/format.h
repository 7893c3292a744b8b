// How `modelfs info` describes a model file, from the "model" object of an info answer
// (fs/control/wire.cc). Pure functions: no I/O.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace modelfs::cli {

std::string FormatCount(uint64_t n);  // 98.3K, 1.24M, 7.00B

// "safetensors: architecture llama, 98.3K parameters, 12 tensors (F32 x12)", with ", context N"
// and ", FILE_TYPE" when known. No architecture is named when neither the header nor
// config.json gave one.
std::string ModelSummary(const nlohmann::json& model);

}  // namespace modelfs::cli
