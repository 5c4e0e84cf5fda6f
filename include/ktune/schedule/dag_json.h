// A ComputeDAG as JSON, exactly: every op, shape, axis and body expression with its types,
// so another process (the isolated measurement worker) rebuilds the same DAG without the
// kernel file. Floats are stored as their bit patterns, so the round trip is exact and the
// rebuilt DAG has the same canonical text and hash.
#pragma once

#include <nlohmann/json.hpp>

#include "ktune/te/compute_dag.h"

namespace ktune::schedule {

nlohmann::json dag_to_json(const te::ComputeDAG& dag);
// Throws UserError naming the problem for malformed input.
te::ComputeDAG dag_from_json(const nlohmann::json& j);

}  // namespace ktune::schedule
