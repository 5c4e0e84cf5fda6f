// `ktune model-eval LOG... [--train=N] [--split=first|random] [--json]`: how well the cost model
// ranks candidates it has not seen. For each workload (and thread count) in the logs, the model
// is trained on N records and predicts the rest: the first N in trial order (--split=first,
// what the search's model faces: the later picks of the search), or N drawn at random
// (--split=random: held-out records from the same mix as the training ones). The result is the pairwise ranking
// accuracy over the held-out valid records (the fraction of pairs whose order of measured
// throughput the model predicts; 0.5 is chance), and the same over the pairs whose measured
// throughputs differ by more than 5% (two measurements of one program on a busy machine
// differ by about that much, so closer pairs are partly a coin toss for any model), and over the
// pairs measured in the same batch of 64 trials (a few seconds apart: the machine's slow drifts
// in speed do not order them).
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <random>

#include <nlohmann/json.hpp>

#include "ktune/log/record.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/cost_model.h"
#include "ktune/search/features.h"
#include "ktune/support/error.h"
#include "subcommands.h"

namespace ktune::cli {

namespace {

using nlohmann::json;

struct ModelEvalFlags {
  std::vector<std::string> logs;
  int train = 300;
  std::string split = "first";
  uint64_t seed = 0;
  bool json_out = false;
};

struct Sample {
  search::ProgramFeatures features;
  double gflops = 0;
  int trial = 0;
  int64_t batch = 0;  // the log and the batch of 64 trials it was measured in
};

int run_model_eval(const ModelEvalFlags& f, const te::KernelRegistry& reg) {
  KT_USER_CHECK(f.train >= 1, "--train must be positive (got ", f.train, ")");
  // Records per workload and thread count, in the order of the logs.
  std::map<std::string, std::vector<std::pair<int, log::Record>>> groups;  // (log index, record)
  std::vector<std::string> order;
  for (int log_index = 0; log_index < int(f.logs.size()); ++log_index) {
    const std::string& path = f.logs[log_index];
    log::LogContents c = log::read_log(path, /*skip_bad_lines=*/true);
    for (const auto& w : c.warnings) std::cerr << "ktune: warning: " << w << "\n";
    for (log::Record& r : c.records) {
      if (r.phase == "final") continue;  // re-measurements of candidates the log holds already
      const std::string key = r.workload.key() + " @" + std::to_string(r.threads) + "t";
      if (!groups.count(key)) order.push_back(key);
      groups[key].emplace_back(log_index, std::move(r));
    }
  }
  KT_USER_CHECK(!order.empty(), "model-eval: the logs hold no record");

  json rows = json::array();
  std::vector<std::vector<std::string>> table;
  for (const std::string& key : order) {
    auto& recs = groups[key];
    std::stable_sort(recs.begin(), recs.end(), [](const auto& a, const auto& b) { return a.second.trial < b.second.trial; });
    const log::Workload& workload = recs[0].second.workload;
    const te::KernelDef* def = reg.find(workload.kernel);
    KT_USER_CHECK(def, "model-eval: unknown kernel '", workload.kernel, "' in the logs (see ktune kernels)");
    std::map<std::string, int64_t> ints(workload.params.begin(), workload.params.end());
    std::map<std::string, std::string> types;
    for (const auto& p : def->params)
      if (p.is_dtype && !workload.dtype.empty()) types[p.name] = workload.dtype;
    auto dag = std::make_shared<const te::ComputeDAG>(def->instantiate(ints, types));
    const target::Target t = target::host_target();
    std::vector<Sample> samples;
    int skipped = 0;
    for (const auto& [log_index, r] : recs) {
      try {
        schedule::State st = schedule::replay(dag, schedule::steps_from_json(r.steps));
        const int64_t batch = int64_t(log_index) * (int64_t(1) << 32) + std::max(0, r.trial - 1) / 64;
        samples.push_back({search::extract_features(st, t), r.valid() ? r.gflops : 0.0, r.trial, batch});
      } catch (const std::exception&) {
        ++skipped;  // a candidate that no longer replays
      }
    }
    const int n_train = std::min<int>(f.train, int(samples.size()));
    std::vector<bool> in_train(samples.size(), false);
    if (f.split == "first") {
      std::fill(in_train.begin(), in_train.begin() + n_train, true);
    } else {
      std::vector<int> idx(samples.size());
      for (int i = 0; i < int(idx.size()); ++i) idx[i] = i;
      std::mt19937_64 rng(f.seed);
      std::shuffle(idx.begin(), idx.end(), rng);
      for (int i = 0; i < n_train; ++i) in_train[idx[i]] = true;
    }
    std::vector<search::ProgramFeatures> train_x, test_x;
    std::vector<double> train_y, test_y;
    std::vector<int64_t> test_batch;  // the log and 64-trial batch of each held-out record
    for (int i = 0; i < int(samples.size()); ++i) {
      if (in_train[i]) {
        train_x.push_back(samples[i].features);
        train_y.push_back(samples[i].gflops);
      } else if (samples[i].gflops > 0) {
        test_x.push_back(samples[i].features);
        test_y.push_back(samples[i].gflops);
        test_batch.push_back(samples[i].batch);
      }
    }
    json row = {{"workload", key}, {"records", recs.size()}, {"skipped", skipped}, {"train", n_train},
                {"held_out", test_x.size()}};
    std::string acc_text = "-", acc5_text = "-", accb_text = "-";
    if (test_x.size() >= 2) {
      auto model = search::make_cost_model("xgboost", f.seed);
      model->update(train_x, train_y, key);
      const std::vector<double> pred = model->predict(test_x);
      const double acc = search::pairwise_ranking_accuracy(pred, test_y);
      const double acc5 = search::pairwise_ranking_accuracy(pred, test_y, 1.05);
      // Pairs measured in the same batch: close in time, so the machine's slow drifts (its
      // speed changes by up to 2x over minutes here) do not decide their order.
      if (const auto accb = search::pairwise_ranking_accuracy(pred, test_y, 1.0, test_batch)) {
        row["accuracy_same_batch"] = *accb;
        accb_text = fmt_num(*accb, 3);
      }
      row["accuracy"] = acc;
      row["accuracy_5pct"] = acc5;
      acc_text = fmt_num(acc, 3);
      acc5_text = fmt_num(acc5, 3);
    } else {
      row["accuracy"] = nullptr;
      row["accuracy_5pct"] = nullptr;
    }
    rows.push_back(row);
    table.push_back({key, std::to_string(recs.size()), std::to_string(n_train), std::to_string(test_x.size()), acc_text, acc5_text, accb_text});
  }
  if (f.json_out) {
    std::cout << json{{"train", f.train}, {"split", f.split}, {"workloads", rows}}.dump(2) << "\n";
  } else {
    std::cout << "cost model (xgboost) trained on " << (f.split == "first" ? "the first " : "") << f.train
              << (f.split == "first" ? " records of each workload, pairwise ranking accuracy on the valid records after them "
                                     : " random records of each workload, pairwise ranking accuracy on the other valid records ")
              << "(0.5 = chance; >5%: over the pairs whose throughputs differ by more than 5%; same batch: over the pairs "
                 "measured in one batch of 64 trials):\n"
              << format_table({"workload", "records", "train", "held out", "accuracy", ">5%", "same batch"}, table,
                              {false, true, true, true, true, true, true});
  }
  return 0;
}

}  // namespace

void register_model_command(CLI::App& app, const te::KernelRegistry& reg, std::vector<Subcommand>& out) {
  auto f = std::make_shared<ModelEvalFlags>();
  CLI::App* cmd = app.add_subcommand(
      "model-eval", "Train the cost model on the first records of each workload in tuning logs and report how well it "
                    "ranks the rest");
  cmd->add_option("logs", f->logs, "Tuning logs")->required()->expected(1, -1);
  cmd->add_option("--train", f->train, "Records of each workload to train on")->capture_default_str();
  cmd->add_option("--split", f->split,
                  "Which records train the model: first (the first in trial order; the rest are held out) or random "
                  "(drawn with --seed)")
      ->check(CLI::IsMember({"first", "random"}))
      ->capture_default_str();
  cmd->add_option("--seed", f->seed, "Random seed of the model")->capture_default_str();
  cmd->add_flag("--json", f->json_out, "Print one JSON document on stdout");
  out.push_back({cmd, [f, &reg] { return run_model_eval(*f, reg); }});
}

}  // namespace ktune::cli
