// How `modelfs info` describes a model (cli/format.h), from the JSON the control protocol sends.
#include <gtest/gtest.h>

#include "cli/format.h"
#include "fs/control/wire.h"

namespace modelfs::cli {
namespace {

nlohmann::json ModelOf(const fs::ModelInfo& m) {
  fs::InfoResult r;
  r.files.push_back({"model.safetensors", 1, 0, true, m, ""});
  return fs::wire::ToJson(r)["files"][0]["model"];
}

fs::ModelInfo TinySafetensors() {
  fs::ModelInfo m;
  m.format = "safetensors";
  m.parameters = 98304;
  m.tensors = 12;
  m.dtypes = {{"F32", 8, 65536}, {"F16", 4, 32768}};
  return m;
}

TEST(ModelSummary, NoArchitectureIsLeftOut) {
  // Neither the header nor config.json named one: the server sends "architecture": "".
  const std::string s = ModelSummary(ModelOf(TinySafetensors()));
  EXPECT_EQ(s, "safetensors: 98.3K parameters, 12 tensors (F32 x8, F16 x4)");
  EXPECT_EQ(s.find("architecture"), std::string::npos);
}

TEST(ModelSummary, NamesTheArchitectureAndGgufDetails) {
  fs::ModelInfo m = TinySafetensors();
  m.architecture = "llama";
  EXPECT_EQ(ModelSummary(ModelOf(m)),
            "safetensors: architecture llama, 98.3K parameters, 12 tensors (F32 x8, F16 x4)");
  m.format = "gguf";
  m.context_length = 256;
  m.file_type = "ALL_F32";
  m.parameters = 1234567;
  EXPECT_EQ(ModelSummary(ModelOf(m)),
            "gguf: architecture llama, 1.23M parameters, 12 tensors (F32 x8, F16 x4), "
            "context 256, ALL_F32");
}

TEST(ModelSummary, MissingOrOddFieldsDoNotThrow) {
  EXPECT_EQ(ModelSummary(nlohmann::json::object()), ": 0 parameters, 0 tensors ()");
  EXPECT_EQ(ModelSummary(nlohmann::json{{"dtypes", 5}, {"architecture", ""}}),
            ": 0 parameters, 0 tensors ()");
  EXPECT_EQ(ModelSummary(nlohmann::json()), "");
}

TEST(FormatCount, Units) {
  EXPECT_EQ(FormatCount(999), "999");
  EXPECT_EQ(FormatCount(98304), "98.3K");
  EXPECT_EQ(FormatCount(7'000'000'000ull), "7.00B");
}

}  // namespace
}  // namespace modelfs::cli
