// The control protocol's JSON (internal to fs/control): requests in, events and final lines
// out, made from the Service's values. The only place besides the CLI that speaks JSON.
//
// A request is {"op": "...", "args": {...}}. The answer is zero or more event lines
// ({"event": ...}) and one final line
// {"done": true, "ok": bool, "code": "<CodeName>", "error": "...", "result": {...}}.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>

#include "fs/control/control.h"
#include "fs/control/jobs.h"
#include "fs/control/service.h"

namespace modelfs::fs::wire {

using EmitJson = std::function<bool(const nlohmann::json& event)>;

// Runs one request for caller; returns the final line. Never throws. jobs is null where no
// mount runs (the job requests then say so).
nlohmann::json Run(Service& service, Jobs* jobs, const nlohmann::json& request,
                   const Caller& caller, const EmitJson& emit);

nlohmann::json ToJson(const LsResult& r);
nlohmann::json ToJson(const InfoResult& r);
nlohmann::json ToJson(const StatsResult& r);
nlohmann::json ToJson(const PrefetchEvent& e);
nlohmann::json ToJson(const PrefetchResult& r);
nlohmann::json ToJson(const UnpinResult& r);
nlohmann::json ToJson(const GcResult& r);
nlohmann::json ToJson(const RmResult& r);
nlohmann::json ToJson(const VerifyEvent& e);
nlohmann::json ToJson(const VerifyResult& r);
nlohmann::json ToJson(const JobView& j);

}  // namespace modelfs::fs::wire
