// Schedule steps (apply, print, JSON round trip) and lowering, checked by interpreting the
// lowered loop nest against a direct evaluation of the tensor expression.
#include <catch2/catch.hpp>

#include "ktune/ir/printer.h"
#include "ktune/schedule/steps.h"
#include "ktune/support/error.h"
#include "support/dags.h"

using namespace ktune;
using namespace ktune::schedule;
using namespace ktune::testing;

namespace {
State tiled_matmul(std::shared_ptr<const te::ComputeDAG> dag, std::vector<int64_t> li, std::vector<int64_t> lj,
                   std::vector<int64_t> lk) {
  State st(dag);
  // C: i, j, k -> split from the last root loop so positions stay put.
  st.apply(SplitStep{0, 2, lk});
  st.apply(SplitStep{0, 1, lj});
  st.apply(SplitStep{0, 0, li});
  return st;
}
}  // namespace

TEST_CASE("naive schedules lower to the tensor expression's values", "[lower]") {
  CHECK(check_lowering(State(matmul_dag(7, 5, 3))) < 1e-5);
  CHECK(check_lowering(State(dense_relu_dag(6, 10, 4))) < 1e-5);
  CHECK(check_lowering(State(conv1d_dag(3, 9, 4, 3, 1))) < 1e-5);
  CHECK(check_lowering(State(softmax_dag(4, 11))) < 1e-5);
}

TEST_CASE("multi-level tiling with SSRSRS order, parallel, vectorize, unroll", "[lower]") {
  auto dag = matmul_dag(16, 32, 8);
  State st = tiled_matmul(dag, {2, 4}, {2, 8}, {4});
  // leaf: i.0 i.1 i.2 j.0 j.1 j.2 k.0 k.1 -> i.0 j.0 i.1 j.1 k.0 i.2 k.1 j.2
  st.apply(ReorderStep{0, {0, 3, 1, 4, 6, 2, 7, 5}});
  st.apply(FuseStep{0, {0, 1}});
  st.apply(AnnotateStep{0, 0, Annotation::Parallel});
  st.apply(AnnotateStep{0, 6, Annotation::Vectorize});
  st.apply(PragmaStep{0, 0, "auto_unroll_max_step", 64});
  CHECK(check_lowering(st) < 1e-5);
  const std::string text = ir::to_string(lower(st, "k").body);
  CHECK(text.find("parallel") != std::string::npos);
  CHECK(text.find("vectorized") != std::string::npos);
}

TEST_CASE("splits that do not divide the extent are guarded", "[lower]") {
  auto dag = matmul_dag(13, 11, 7);
  State st = tiled_matmul(dag, {4}, {2, 3}, {5});
  CHECK(check_lowering(st) < 1e-5);
  const std::string text = ir::to_string(lower(st, "k").body);
  CHECK(text.find("if") != std::string::npos);
}

TEST_CASE("cache_write with the cache stage computed at the output tile", "[lower]") {
  for (int64_t n : {16, 13}) {
    auto dag = matmul_dag(n, n, 6);
    State st(dag);
    st.apply(CacheWriteStep{0, ir::MemoryScope::Local});
    REQUIRE(st.num_stages() == 2);
    CHECK(st.stage(0).op.name == "C.local");
    // Tile the copy stage C (stage 1): i, j -> i.0 j.0 i.1 j.1
    st.apply(SplitStep{1, 1, {4}});
    st.apply(SplitStep{1, 0, {4}});
    st.apply(ReorderStep{1, {0, 2, 1, 3}});
    st.apply(ComputeAtStep{0, 1, 1});
    // Tile the cache stage too: its region is 4x4.
    st.apply(SplitStep{0, 2, {3}});
    st.apply(AnnotateStep{0, 1, Annotation::Vectorize});
    CHECK(check_lowering(st) < 1e-5);
    const std::string text = ir::to_string(lower(st, "k").body);
    CHECK(text.find("local") != std::string::npos);
  }
}

TEST_CASE("cache_read packs the panel a loop reads", "[lower]") {
  for (int64_t n : {16, 13}) {
    auto dag = matmul_dag(n, n, 12);
    State st(dag);
    st.apply(CacheReadStep{"B", ir::MemoryScope::Local, {0}});
    REQUIRE(st.num_stages() == 2);
    CHECK(st.stage(0).op.name == "B.local");
    // C (stage 1): i, j, k -> j.0 i k.0 j.1 k.1 ; B.local at k.0: a 4 x 4 panel.
    st.apply(SplitStep{1, 2, {4}});
    st.apply(SplitStep{1, 1, {4}});
    st.apply(ReorderStep{1, {1, 0, 3, 2, 4}});
    st.apply(ComputeAtStep{0, 1, 2});
    CHECK(check_lowering(st) < 1e-5);
    CHECK_THAT(st.steps_text(), Catch::Contains("cache_read(B, local, [C])"));
    const std::string text = ir::to_string(lower(st, "k").body);
    CHECK(text.find("allocate B.local[f32 * 16] local") != std::string::npos);
  }
}

TEST_CASE("fusion: a reduction computed at its element-wise consumer", "[lower]") {
  auto dag = dense_relu_dag(12, 16, 5);
  State st(dag);
  st.apply(SplitStep{1, 1, {8}});
  st.apply(SplitStep{1, 0, {3}});
  st.apply(ReorderStep{1, {0, 2, 1, 3}});
  st.apply(ComputeAtStep{0, 1, 1});
  st.apply(SplitStep{0, 2, {5}});
  CHECK(check_lowering(st) < 1e-5);
}

TEST_CASE("padding stage inlined, at root, or computed inside the convolution", "[lower]") {
  auto dag = conv1d_dag(3, 10, 4, 3, 1);
  {
    State st(dag);
    st.apply(ComputeInlineStep{0});
    CHECK(check_lowering(st) < 1e-5);
  }
  {
    State st(dag);  // O: k, q, c, s
    st.apply(SplitStep{1, 1, {4}});  // q(10) -> 3 x 4, not exact
    st.apply(ComputeAtStep{0, 1, 1});
    CHECK(check_lowering(st) < 1e-5);
  }
  {
    State st(dag);
    st.apply(ComputeAtStep{0, 1, 2});  // inside the reduction loop c
    CHECK(check_lowering(st) < 1e-5);
  }
}

TEST_CASE("softmax with inlined exp", "[lower]") {
  auto dag = softmax_dag(5, 9);
  State st(dag);
  st.apply(ComputeInlineStep{1});
  st.apply(SplitStep{3, 1, {3}});
  st.apply(AnnotateStep{3, 2, Annotation::Vectorize});
  CHECK(check_lowering(st) < 1e-5);
}

TEST_CASE("invalid steps are rejected with a message naming the step", "[steps]") {
  auto dag = matmul_dag(8, 8, 8);
  State st(dag);
  auto msg = [&](const Step& s) {
    State copy = st;
    try {
      copy.apply(s);
    } catch (const InvalidCandidate& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK_THAT(msg(SplitStep{0, 0, {0}}), Catch::Contains("split") && Catch::Contains("not positive"));
  CHECK_THAT(msg(SplitStep{0, 0, {16}}), Catch::Contains("more than the extent"));
  CHECK_THAT(msg(SplitStep{3, 0, {2}}), Catch::Contains("stage 3 does not exist"));
  CHECK_THAT(msg(SplitStep{0, 5, {2}}), Catch::Contains("no loop at position 5"));
  CHECK_THAT(msg(FuseStep{0, {1, 2}}), Catch::Contains("spatial loop with a reduction"));
  CHECK_THAT(msg(ReorderStep{0, {0, 0, 1}}), Catch::Contains("permutation"));
  CHECK_THAT(msg(AnnotateStep{0, 2, Annotation::Parallel}), Catch::Contains("reduction loop"));
  CHECK_THAT(msg(ComputeInlineStep{0}), Catch::Contains("output"));
  CHECK_THAT(msg(PragmaStep{0, 0, "bogus", 1}), Catch::Contains("unknown pragma"));
}

TEST_CASE("every step kind round-trips through JSON", "[steps]") {
  std::vector<Step> steps = {
      SplitStep{1, 2, {4, 8}},       FuseStep{0, {1, 2, 3}},   ReorderStep{2, {2, 0, 1}},
      AnnotateStep{0, 1, Annotation::Vectorize}, AnnotateStep{0, 0, Annotation::ThreadIdxX},
      PragmaStep{0, 0, "auto_unroll_max_step", 64}, ComputeAtStep{0, 1, 3}, ComputeInlineStep{2},
      ComputeRootStep{1},            CacheWriteStep{0, ir::MemoryScope::Local},
      CacheWriteStep{1, ir::MemoryScope::Shared}, CacheReadStep{"B", ir::MemoryScope::Local, {1, 2}}};
  const auto j = steps_to_json(steps);
  const auto back = steps_from_json(nlohmann::json::parse(j.dump()));
  REQUIRE(back.size() == steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    CHECK(back[i].key() == steps[i].key());
    CHECK(back[i].kind() == steps[i].kind());
  }
  CHECK(canonical_key(back) == canonical_key(steps));
}

TEST_CASE("malformed JSON steps are user errors", "[steps]") {
  using nlohmann::json;
  CHECK_THROWS_WITH(steps_from_json(json::parse(R"([{"kind":"twist","stage":0}])")),
                    Catch::Contains("step 0") && Catch::Contains("unknown step kind 'twist'"));
  CHECK_THROWS_WITH(steps_from_json(json::parse(R"([{"kind":"split","stage":0}])")),
                    Catch::Contains("missing the field 'iter'"));
  CHECK_THROWS_WITH(steps_from_json(json::parse(R"([{"kind":"annotate","stage":0,"iter":0,"annotation":"fast"}])")),
                    Catch::Contains("unknown annotation 'fast'"));
}

TEST_CASE("replay reproduces a state and printing names the loops", "[steps]") {
  auto dag = matmul_dag(16, 16, 16);
  State st = tiled_matmul(dag, {4}, {4}, {4});
  st.apply(FuseStep{0, {0, 1}});
  State again = replay(dag, steps_from_json(steps_to_json(st.steps())));
  CHECK(again.to_string() == st.to_string());
  CHECK_THAT(st.steps_text(), Catch::Contains("split(C, r0, [4])") && Catch::Contains("fuse(C, [i.0, i.1])"));
  CHECK(ir::to_string(lower(again, "k").body) == ir::to_string(lower(st, "k").body));
}
