// The tuner <-> worker protocol of isolated measurement (private to search).
//
// One stream socket. Each message is a frame: a 4-byte length (host byte order) and that
// many bytes of JSON. Tuner to worker:
//   {"type":"init", "dag":{...}, "dag_hash":H, "target":{...}, "threads":T, "timing":{...},
//    "reference_cached":bool, "debug":N}
//   {"type":"compile", "candidates":[{"steps":[...], "fault":"none"|"segv"|...}, ...]}
//                                   a group: replaces the last one, compiled on T threads
//   {"type":"run", "index":I, "slow_cutoff_ms":X}   verify and time the group's I-th candidate
// Worker to tuner:
//   {"type":"ready", "reference":"interpreter"|"naive schedule"}   after init
//   {"type":"compiling", "index":I, "tid":T}   a thread (Linux thread id T) starts candidate I
//   {"type":"compiled", "index":I}             ... and is done with it
//   {"type":"group", "busy_ms":X, "replay_ms":Y}   the whole group is compiled
//   {"type":"phase", "phase":"time", "run_ms":X}   a run candidate is verified; timing starts
//   {"type":"result", "result":{...}, "busy_ms":X}   one per "run" (a compile error too)
//   {"type":"error", "message":M}                   init failed; the worker exits
// A candidate is running from the moment the tuner sends "run".
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ktune/search/measurer.h"
#include "ktune/target/target.h"

namespace ktune::search::worker {

using Clock = std::chrono::steady_clock;

// Frames on a socket. send() never raises SIGPIPE.
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  int fd() const { return fd_; }
  // False when the other side is gone.
  bool send(const nlohmann::json& j);
  enum class Got { Message, Timeout, Closed, Garbled };
  // Waits for a message until `deadline` (none: forever). A signal does not end the wait.
  Got receive(nlohmann::json& out, std::optional<Clock::time_point> deadline = std::nullopt);

 private:
  int fd_;
  std::string buf_;
};

nlohmann::json target_to_json(const target::Target& t);
target::Target target_from_json(const nlohmann::json& j);
nlohmann::json timing_to_json(const runtime::TimingOptions& t);
runtime::TimingOptions timing_from_json(const nlohmann::json& j);
nlohmann::json result_to_json(const MeasureResult& r);
MeasureResult result_from_json(const nlohmann::json& j);

}  // namespace ktune::search::worker
