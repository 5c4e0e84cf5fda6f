// Candidate measurement with verification against a reference.
#include "ktune/search/measurer.h"

#include "ktune/ir/interpreter.h"
#include "ktune/schedule/lower.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::search {

using runtime::ErrorClass;
using runtime::HostBuffer;

Measurer::Measurer(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, int threads,
                   runtime::TimingOptions timing)
    : dag_(std::move(dag)), runner_(std::make_unique<runtime::CpuRunner>(std::move(t), threads)), timing_(timing) {
  uint64_t seed = 1;
  for (int i : dag_->inputs()) {
    const auto& op = dag_->ops[i];
    inputs_.emplace_back(op.dtype, op.shape);
    inputs_.back().fill_random(seed++);
  }
  for (int i : dag_->outputs()) {
    const auto& op = dag_->ops[i];
    outputs_.emplace_back(op.dtype, op.shape);
    expected_.emplace_back(op.dtype, op.shape);
  }
  compute_reference();
}

Measurer::~Measurer() = default;

void Measurer::compute_reference() {
  schedule::State naive(dag_);
  ir::LoweredFunc f = schedule::lower(naive, dag_->kernel + "_reference");
  std::vector<void*> args;
  for (auto& b : inputs_) args.push_back(b.data());
  for (auto& b : expected_) {
    b.poison();
    args.push_back(b.data());
  }
  if (dag_->flop_count() <= kInterpreterFlopLimit) {
    reference_kind_ = "interpreter";
    ir::interpret(f, args);
  } else {
    reference_kind_ = "naive schedule";
    auto k = runner_->compile(f);
    k->run(args);
  }
  debug(1) << "reference for " << dag_->kernel << " computed by the " << reference_kind_ << "\n";
}

MeasureResult Measurer::measure(const schedule::State& state) {
  MeasureResult r;
  ir::LoweredFunc f;
  try {
    f = schedule::lower(state, dag_->kernel);
  } catch (const InvalidCandidate& e) {
    r.error = ErrorClass::InvalidSchedule;
    r.message = e.what();
    return r;
  }
  std::unique_ptr<runtime::CompiledKernel> k;
  try {
    k = runner_->compile(f);
    r.compile_ms = k->compile_ms();
  } catch (const InvalidCandidate& e) {
    r.error = ErrorClass::CompileError;
    r.message = e.what();
    return r;
  } catch (const InternalError& e) {
    r.error = ErrorClass::CompileError;
    r.message = e.what();
    return r;
  }
  std::vector<void*> args;
  for (auto& b : inputs_) args.push_back(b.data());
  for (auto& b : outputs_) {
    b.poison();
    args.push_back(b.data());
  }
  try {
    k->run(args);
  } catch (const std::exception& e) {
    r.error = ErrorClass::RuntimeError;
    r.message = e.what();
    return r;
  }
  for (size_t i = 0; i < outputs_.size(); ++i) {
    const double err = runtime::relative_l2_error(outputs_[i], expected_[i]);
    r.rel_error = std::max(r.rel_error, err);
    if (!(err <= runtime::tolerance_for(outputs_[i].dtype()))) {
      r.error = ErrorClass::WrongAnswer;
      r.message = detail::concat("output ", dag_->ops[dag_->outputs()[i]].name, " differs from the ",
                                 reference_kind_, ": relative L2 error ", err);
      return r;
    }
  }
  r.timing = k->time(args, timing_);
  r.gflops = r.timing.median_ms > 0 ? dag_->flop_count() / (r.timing.median_ms * 1e6) : 0;
  return r;
}

std::unique_ptr<MeasureBackend> make_measure_backend(std::shared_ptr<const te::ComputeDAG> dag,
                                                     const target::Target& t, int threads,
                                                     const runtime::TimingOptions& timing, bool isolated) {
  KT_USER_CHECK(!isolated, "isolated measurement is not available yet");
  return std::make_unique<Measurer>(std::move(dag), t, threads, timing);
}

}  // namespace ktune::search
